package conf

import (
	"net/netip"
	"slices"
	"strings"
)

// What decided a flow when no rule did: the name of the default.
const (
	DecidedIntraZone    = "default:intraZone"
	DecidedInterZone    = "default:interZone"
	DecidedToExternal   = "default:toExternal"
	DecidedFromExternal = "default:fromExternal"
	DecidedToHost       = "default:toHost"
	DecidedFromHost     = "default:fromHost"
	// DecidedUnmanaged: neither side is in a zone, so the policy has no
	// say (zonenet leaves such traffic to the host's own firewall).
	DecidedUnmanaged = "unmanaged"
)

// Flow is the first packet of a connection. An address is classified as
// the host when its Host flag is set or it is a zone's gateway, else as the
// zone whose subnet holds it, else as external.
type Flow struct {
	Src, Dst         netip.Addr
	SrcHost, DstHost bool // the node itself, whatever address it used
	Proto            Protocol
	SrcPort, DstPort uint16
}

// class is where an address sits: the host, one zone, or external.
type class struct {
	kind EndpointKind // EndpointZone, EndpointExternal or EndpointHost
	zone string
}

func (c class) String() string {
	if c.kind == EndpointZone {
		return c.zone
	}
	return string(c.kind)
}

func (p *Policy) classify(a netip.Addr, host bool) class {
	if host {
		return class{kind: EndpointHost}
	}
	a = a.Unmap()
	for _, z := range p.Zones {
		if slices.Contains(z.Gateways, a) {
			return class{kind: EndpointHost}
		}
	}
	for _, z := range p.Zones {
		for _, s := range z.Subnets {
			if s.Contains(a) {
				return class{kind: EndpointZone, zone: z.Name}
			}
		}
	}
	return class{kind: EndpointExternal}
}

// Allows says whether a new connection may be opened, and which rule (or
// default, one of the Decided* names) decided.
func (p *Policy) Allows(f Flow) (bool, string) {
	sc, dc := p.classify(f.Src, f.SrcHost), p.classify(f.Dst, f.DstHost)
	if sc.kind != EndpointZone && dc.kind != EndpointZone {
		return true, DecidedUnmanaged
	}
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	for i := range p.Rules {
		r := &p.Rules[i]
		if !slices.ContainsFunc(r.Protocols, func(q Protocol) bool { return q == ProtoAll || q == f.Proto }) {
			continue
		}
		srcOK := slices.ContainsFunc(r.Sources, func(e Endpoint) bool { return e.matches(sc, src, f.Proto, f.SrcPort) })
		if srcOK && slices.ContainsFunc(r.Destinations, func(e Endpoint) bool { return e.matches(dc, dst, f.Proto, f.DstPort) }) {
			return true, r.Name
		}
	}
	a, name := p.defaultFor(sc, dc)
	return a == Allow, name
}

func (e *Endpoint) matches(c class, a netip.Addr, proto Protocol, port uint16) bool {
	switch e.Kind {
	case EndpointZone:
		if c.kind != EndpointZone || c.zone != e.Zone {
			return false
		}
	case EndpointCIDR, EndpointAddress:
		if c.kind == EndpointHost || !e.Prefix.Contains(a) {
			return false
		}
	default:
		if c.kind != e.Kind {
			return false
		}
	}
	if len(e.Ports) == 0 {
		return true
	}
	return proto.HasPorts() && slices.ContainsFunc(e.Ports, func(r PortRange) bool { return r.Contains(port) })
}

// defaultFor is the default verdict between two classes, at least one of
// them a zone.
func (p *Policy) defaultFor(s, d class) (Action, string) {
	switch {
	case s.kind == EndpointZone && d.kind == EndpointZone && s.zone == d.zone:
		return p.Zone(s.zone).IntraZone, DecidedIntraZone
	case s.kind == EndpointZone && d.kind == EndpointZone:
		return p.Defaults.InterZone, DecidedInterZone
	case d.kind == EndpointExternal:
		return p.Defaults.ToExternal, DecidedToExternal
	case s.kind == EndpointExternal:
		return p.Defaults.FromExternal, DecidedFromExternal
	case d.kind == EndpointHost:
		return p.Defaults.ToHost, DecidedToHost
	case s.kind == EndpointHost:
		return p.Defaults.FromHost, DecidedFromHost
	}
	return Allow, DecidedUnmanaged
}

// classes are the classes an endpoint can select: a CIDR may touch several
// zones and the outside.
func (p *Policy) classes(e Endpoint) []class {
	switch e.Kind {
	case EndpointZone, EndpointExternal, EndpointHost:
		return []class{{kind: e.Kind, zone: e.Zone}}
	}
	var out []class
	inside := false
	for _, z := range p.Zones {
		for _, s := range z.Subnets {
			if s.Overlaps(e.Prefix) {
				out = append(out, class{kind: EndpointZone, zone: z.Name})
				inside = inside || prefixIn(e.Prefix, s)
				break
			}
		}
	}
	if !inside {
		out = append(out, class{kind: EndpointExternal})
	}
	return out
}

// prefixIn reports whether p lies inside outer.
func prefixIn(p, outer netip.Prefix) bool {
	return outer.Bits() <= p.Bits() && outer.Contains(p.Addr())
}

func classList(cl []class) string {
	s := make([]string, len(cl))
	for i, c := range cl {
		s[i] = c.String()
	}
	if len(s) > 1 {
		return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
	}
	return strings.Join(s, "")
}

// pairManaged reports whether some flow between s and d has a zone side.
func (p *Policy) pairManaged(s, d Endpoint) bool {
	for _, sc := range p.classes(s) {
		for _, dc := range p.classes(d) {
			if sc.kind == EndpointZone || dc.kind == EndpointZone {
				return true
			}
		}
	}
	return false
}

// Address families as bits.
const (
	fam4 = 1 << iota
	fam6
)

func (p *Policy) families(e Endpoint) int {
	switch e.Kind {
	case EndpointCIDR, EndpointAddress:
		if e.Prefix.Addr().Is4() {
			return fam4
		}
		return fam6
	case EndpointZone:
		f := 0
		for _, s := range p.Zone(e.Zone).Subnets {
			if s.Addr().Is4() {
				f |= fam4
			} else {
				f |= fam6
			}
		}
		return f
	}
	return fam4 | fam6
}

// covers reports whether endpoint a matches every flow endpoint b matches.
func (p *Policy) covers(a, b Endpoint) bool {
	return p.selects(a, b) && portsCover(a.Ports, b.Ports)
}

func (p *Policy) selects(a, b Endpoint) bool {
	switch {
	case a.Kind == b.Kind && a.Kind == EndpointZone:
		return a.Zone == b.Zone
	case a.Kind == b.Kind && (a.Kind == EndpointExternal || a.Kind == EndpointHost):
		return true
	case b.Kind == EndpointCIDR || b.Kind == EndpointAddress:
		switch a.Kind {
		case EndpointCIDR, EndpointAddress:
			return prefixIn(b.Prefix, a.Prefix)
		case EndpointZone, EndpointExternal:
			cl := p.classes(b)
			return len(cl) == 1 && cl[0] == class{kind: a.Kind, zone: a.Zone}
		}
	case b.Kind == EndpointZone && (a.Kind == EndpointCIDR || a.Kind == EndpointAddress):
		z := p.Zone(b.Zone)
		return len(z.Subnets) > 0 && !slices.ContainsFunc(z.Subnets, func(s netip.Prefix) bool { return !prefixIn(s, a.Prefix) })
	}
	return false
}

// portsCover reports whether the ranges a hold every port of b (empty:
// every port).
func portsCover(a, b []PortRange) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, r := range b {
		for port := int(r.First); port <= int(r.Last); {
			i := slices.IndexFunc(a, func(q PortRange) bool { return q.Contains(uint16(port)) })
			if i < 0 {
				return false
			}
			port = int(a[i].Last) + 1
		}
	}
	return true
}

// coveredBy reports whether rule q allows every flow rule r allows.
func (p *Policy) coveredBy(r, q *Rule) bool {
	for _, s := range r.Sources {
		for _, d := range r.Destinations {
			for _, pr := range r.Protocols {
				if !p.tripleIn(s, d, pr, q) {
					return false
				}
			}
		}
	}
	return true
}

func (p *Policy) tripleIn(s, d Endpoint, pr Protocol, q *Rule) bool {
	if !slices.ContainsFunc(q.Protocols, func(x Protocol) bool { return x == ProtoAll || x == pr }) {
		return false
	}
	return slices.ContainsFunc(q.Sources, func(x Endpoint) bool { return p.covers(x, s) }) &&
		slices.ContainsFunc(q.Destinations, func(x Endpoint) bool { return p.covers(x, d) })
}

// defaultsAllow reports whether the defaults alone allow all r allows, and
// names one of those defaults.
func (p *Policy) defaultsAllow(r *Rule) (bool, string) {
	name := ""
	for _, s := range r.Sources {
		for _, d := range r.Destinations {
			for _, sc := range p.classes(s) {
				for _, dc := range p.classes(d) {
					if sc.kind != EndpointZone && dc.kind != EndpointZone {
						continue
					}
					a, n := p.defaultFor(sc, dc)
					if a != Allow {
						return false, ""
					}
					name = n
				}
			}
		}
	}
	return name != "", name
}

// maxPairwiseRules bounds the quadratic redundancy check: a policy of
// 10,000 rules took seconds to validate, on every apply and zone setup.
const maxPairwiseRules = 2000

// warnRules reports rules that allow nothing new: covered by another rule
// (the later of two equal rules is the one reported) or by the defaults.
func (v *policyValidator) warnRules() {
	p := v.p
	pairs := len(p.Rules) <= maxPairwiseRules
	if !pairs {
		v.warnf("rules", "redundancy between rules is not checked for %d rules (more than %d): it compares every pair", len(p.Rules), maxPairwiseRules)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if ok, name := p.defaultsAllow(r); ok {
			v.warnf(v.ruleKeys[i], "is redundant: the default %s already allows everything it allows", strings.TrimPrefix(name, "default:"))
			continue
		}
		for j := range p.Rules {
			if !pairs {
				break
			}
			q := &p.Rules[j]
			if i == j || !p.coveredBy(r, q) || (j > i && p.coveredBy(q, r)) {
				continue
			}
			v.warnf(v.ruleKeys[i], "is redundant: rule %s already allows everything it allows", q.Name)
			break
		}
	}
}
