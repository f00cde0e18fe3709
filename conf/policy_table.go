package conf

import (
	"slices"
	"strings"
)

// PolicyTable says what may reach what: one row per source and one column
// per destination, over the zones (in order), then external, then host.
type PolicyTable struct {
	Labels []string
	Cells  [][]TableCell // [source][destination]
}

// TableCell is what the policy allows from one class to another.
type TableCell struct {
	// Managed is false when neither side is a zone: the policy has no say.
	Managed bool
	Default Action
	Decided string // the Decided* name of the default
	Allows  []TableAllow
}

// TableAllow is what one rule allows in a cell.
type TableAllow struct {
	Rule     string
	Protocol Protocol
	// Source and Destination narrow the cell when the rule selects part of
	// it (a CIDR or an address); empty when it selects all of it.
	Source, Destination   string
	SourcePorts, DstPorts []PortRange
}

func (a TableAllow) String() string {
	var b strings.Builder
	b.WriteString(string(a.Protocol))
	if len(a.DstPorts) > 0 {
		b.WriteString(" " + portList(a.DstPorts))
	}
	if a.Source != "" {
		b.WriteString(" from " + a.Source)
	}
	if len(a.SourcePorts) > 0 {
		b.WriteString(" sport " + portList(a.SourcePorts))
	}
	if a.Destination != "" {
		b.WriteString(" to " + a.Destination)
	}
	return b.String()
}

func portList(rs []PortRange) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// String is the cell as `zonenetctl policy check` prints it: "-" where
// the policy has no say, "allow" where the default allows, else what the
// rules allow or "deny".
func (c TableCell) String() string {
	switch {
	case !c.Managed:
		return "-"
	case c.Default == Allow:
		return "allow"
	case len(c.Allows) == 0:
		return "deny"
	}
	var parts []string
	for _, a := range c.Allows {
		if s := a.String(); !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

// Table explains the policy cell by cell. A flow from class S to class D
// passes iff Allows says so: the cell's default allows it, or one of its
// Allows matches it.
func (p *Policy) Table() PolicyTable {
	var cls []class
	for _, z := range p.Zones {
		cls = append(cls, class{kind: EndpointZone, zone: z.Name})
	}
	cls = append(cls, class{kind: EndpointExternal}, class{kind: EndpointHost})
	t := PolicyTable{Cells: make([][]TableCell, len(cls))}
	index := map[class]int{}
	for i, c := range cls {
		t.Labels = append(t.Labels, c.String())
		index[c] = i
		t.Cells[i] = make([]TableCell, len(cls))
		for j, d := range cls {
			cell := &t.Cells[i][j]
			cell.Managed = c.kind == EndpointZone || d.kind == EndpointZone
			if cell.Managed {
				cell.Default, cell.Decided = p.defaultFor(c, d)
			}
		}
	}
	for _, r := range p.Rules {
		for _, s := range r.Sources {
			for _, d := range r.Destinations {
				for _, sc := range p.classes(s) {
					for _, dc := range p.classes(d) {
						cell := &t.Cells[index[sc]][index[dc]]
						if !cell.Managed {
							continue
						}
						for _, proto := range r.Protocols {
							cell.Allows = append(cell.Allows, TableAllow{
								Rule: r.Name, Protocol: proto,
								Source: p.narrowing(s, sc), Destination: p.narrowing(d, dc),
								SourcePorts: s.Ports, DstPorts: d.Ports,
							})
						}
					}
				}
			}
		}
	}
	return t
}

// narrowing is the endpoint's selector when it selects only part of the
// class c, else "".
func (p *Policy) narrowing(e Endpoint, c class) string {
	if e.Kind != EndpointCIDR && e.Kind != EndpointAddress {
		return ""
	}
	if c.kind == EndpointZone && p.selects(e, Endpoint{Kind: EndpointZone, Zone: c.zone}) {
		return ""
	}
	return e.String()
}
