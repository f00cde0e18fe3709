package acl

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
)

// ChainSpoof is the filter table's anti-spoofing stage, jumped to at
// position 1 of FORWARD and INPUT so it judges a packet before the policy
// chains and their established/related shortcut do.
const ChainSpoof = "ZONENET-SPOOF"

// Spoof is one container's anti-spoofing chain: what enters the host from
// its host veth must carry one of its addresses and its MAC.
type Spoof struct {
	Network, ContainerID, IfName string
	HostVeth                     string
	MAC                          net.HardwareAddr
	IPs                          []netip.Addr
}

func (s Spoof) chain() string {
	return ownerChain("ZN-SPOOF-", s.Network, s.ContainerID, s.IfName)
}

func (s Spoof) owner() string {
	return fmt.Sprintf("zonenet %s %s/%s", s.Network, s.ContainerID, s.IfName)
}

// addrs are the container's addresses of family f, sorted.
func (s Spoof) addrs(f Family) []netip.Addr {
	var out []netip.Addr
	for _, a := range s.IPs {
		if familyOf(a) == f {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// spoofFrom are the built-in chains that jump to ChainSpoof.
var spoofFrom = []string{"FORWARD", "INPUT"}

// renderSpoof writes the restore lines of a container's anti-spoofing
// chain for family f, given the filter table as it is. Neighbour
// discovery needs link-local and, for duplicate address detection, the
// unspecified source, still from the container's MAC.
func renderSpoof(b *bytes.Buffer, rs ruleSet, s Spoof, f Family) {
	if !rs.chains[ChainSpoof] {
		fmt.Fprintf(b, ":%s - [0:0]\n", ChainSpoof)
	}
	for _, from := range spoofFrom {
		if !rs.hasJump(from, ChainSpoof) {
			fmt.Fprintf(b, "-I %s 1 %s -j %s\n", from, comment("zonenet anti-spoofing"), ChainSpoof)
		}
	}
	ch := s.chain()
	owner := s.owner()
	mac := "-m mac --mac-source " + strings.ToUpper(s.MAC.String())
	fmt.Fprintf(b, ":%s - [0:0]\n", ch)
	var sources []string
	for _, a := range s.addrs(f) {
		sources = append(sources, netip.PrefixFrom(a, a.BitLen()).String())
	}
	if f == IPv6 {
		sources = append(sources, "fe80::/10", "::/128")
	}
	for _, src := range sources {
		b.WriteString(jumpLine(ch, "-s "+src+" "+mac, owner, "RETURN") + "\n")
	}
	b.WriteString(jumpLine(ch, "", owner+" spoofed", "DROP") + "\n")
	if !rs.hasJump(ChainSpoof, ch) {
		b.WriteString(jumpLine(ChainSpoof, "-m physdev --physdev-in "+s.HostVeth, owner, ch) + "\n")
	}
}

// renderRemoveSpoof writes the lines removing a container's chain, and
// the anti-spoofing stage itself when no other container uses it.
func renderRemoveSpoof(b *bytes.Buffer, rs ruleSet, s Spoof) {
	ch := s.chain()
	renderRemoveOwnerChain(b, rs, ChainSpoof, ch)
	if !rs.chains[ChainSpoof] {
		return
	}
	for l := range rs.rules {
		if strings.HasPrefix(l, "-A "+ChainSpoof+" ") && !strings.HasSuffix(l, " -j "+ch) {
			return // another container's
		}
	}
	for _, l := range rs.sortedRules() {
		for _, from := range spoofFrom {
			if strings.HasPrefix(l, "-A "+from+" ") && strings.HasSuffix(l, " -j "+ChainSpoof) {
				b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
			}
		}
	}
	fmt.Fprintf(b, "-X %s\n", ChainSpoof)
}

// HasSpoof reports whether a container's anti-spoofing chain is in place
// for every family it has an address of.
func HasSpoof(r Runner, s Spoof) (bool, error) {
	for _, f := range []Family{IPv4, IPv6} {
		if len(s.addrs(f)) == 0 {
			continue
		}
		saved, err := r.Save(f, "filter")
		if err != nil {
			return false, err
		}
		rs := parseSave(saved)
		ch := s.chain()
		for _, from := range spoofFrom {
			if !rs.hasJump(from, ChainSpoof) {
				return false, nil
			}
		}
		if !rs.hasJump(ChainSpoof, ch) || !rs.hasJump(ch, "DROP") {
			return false, nil
		}
	}
	return true, nil
}

// Container is what one container owns in iptables: published ports (nat)
// and anti-spoofing (filter); either may be nil.
type Container struct {
	Ports *HostPorts
	Spoof *Spoof
}

// AddContainer installs a container's chains with one restore per address
// family it needs, after one save per table involved.
func AddContainer(r Runner, c Container) error {
	return locked(r, func() error {
		return containerTables(r, c, func(b *bytes.Buffer, rs ruleSet, table string, f Family) {
			if table == "nat" {
				renderHostPorts(b, rs, *c.Ports)
			} else {
				renderSpoof(b, rs, *c.Spoof, f)
			}
		})
	})
}

// RemoveContainer removes a container's chains, one restore per family at
// most; missing pieces are fine.
func RemoveContainer(r Runner, c Container) error {
	return locked(r, func() error {
		return containerTables(r, c, func(b *bytes.Buffer, rs ruleSet, table string, f Family) {
			if table == "nat" {
				renderRemoveOwnerChain(b, rs, ChainHostports, c.Ports.chain())
			} else {
				renderRemoveSpoof(b, rs, *c.Spoof)
			}
		})
	})
}

// containerTables saves each table c touches in each family, lets render
// write its lines, and restores what was written in one exec per family.
func containerTables(r Runner, c Container, render func(b *bytes.Buffer, rs ruleSet, table string, f Family)) error {
	for _, f := range []Family{IPv4, IPv6} {
		var tables []Table
		var names []string
		if c.Ports != nil && familyOf(c.Ports.IP) == f {
			names = append(names, "nat")
		}
		if c.Spoof != nil && len(c.Spoof.addrs(f)) > 0 {
			names = append(names, "filter")
		}
		for _, t := range names {
			saved, err := r.Save(f, t)
			if err != nil {
				return err
			}
			var b bytes.Buffer
			render(&b, parseSave(saved), t, f)
			if b.Len() > 0 {
				tables = append(tables, Table{Name: t, Body: b.Bytes()})
			}
		}
		if len(tables) == 0 {
			continue
		}
		if err := r.RestoreTables(f, tables); err != nil {
			return err
		}
	}
	return nil
}
