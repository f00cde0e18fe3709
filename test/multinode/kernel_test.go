//go:build linux

package multinode

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/zonenet/zonenet/overlay"
)

// nodeState is the overlay as a node's kernel holds it.
type nodeState struct{ overlay.State }

func (n *tnode) snapshot() nodeState {
	n.c.t.Helper()
	var st overlay.State
	err := n.ns.Do(func() error {
		var err error
		st, err = overlay.Snapshot(overlay.Config{})
		return err
	})
	if err != nil {
		n.c.t.Fatalf("overlay snapshot of %s: %v", n.name, err)
	}
	return nodeState{st}
}

// hasPeer: the FDB entry and the neighbour entry of o are there.
func (s nodeState) hasPeer(o *tnode) bool {
	mac := overlay.DeriveMAC(o.name).String()
	fdb, neigh := false, false
	for _, e := range s.FDB {
		fdb = fdb || (e.MAC.String() == mac && e.Dst == o.underlay)
	}
	for _, e := range s.Neighs {
		neigh = neigh || (e.MAC.String() == mac && e.IP == o.underlay)
	}
	return fdb && (neigh || len(o.blocks()) == 0)
}

// mentions lists every entry that still refers to o.
func (s nodeState) mentions(o *tnode) []string {
	mac := overlay.DeriveMAC(o.name).String()
	var out []string
	for _, e := range s.FDB {
		if e.MAC.String() == mac || e.Dst == o.underlay {
			out = append(out, fmt.Sprintf("fdb %s dst %s", e.MAC, e.Dst))
		}
	}
	for _, e := range s.Neighs {
		if e.MAC.String() == mac || e.IP == o.underlay {
			out = append(out, fmt.Sprintf("neigh %s lladdr %s", e.IP, e.MAC))
		}
	}
	for _, r := range s.Routes {
		if r.Gw == o.underlay {
			out = append(out, fmt.Sprintf("route %s via %s", r.Dst, r.Gw))
		}
	}
	for _, a := range s.PeerSet {
		if a == o.underlay {
			out = append(out, "peer set member "+a.String())
		}
	}
	return out
}

// mentionsAddr lists every entry that refers to the underlay address a.
func (s nodeState) mentionsAddr(a netip.Addr) []string {
	var out []string
	for _, e := range s.FDB {
		if e.Dst == a {
			out = append(out, fmt.Sprintf("fdb %s dst %s", e.MAC, e.Dst))
		}
	}
	for _, e := range s.Neighs {
		if e.IP == a {
			out = append(out, fmt.Sprintf("neigh %s lladdr %s", e.IP, e.MAC))
		}
	}
	for _, r := range s.Routes {
		if r.Gw == a {
			out = append(out, fmt.Sprintf("route %s via %s", r.Dst, r.Gw))
		}
	}
	for _, m := range s.PeerSet {
		if m == a {
			out = append(out, "peer set member "+m.String())
		}
	}
	return out
}

func (s nodeState) routes(block netip.Prefix, gw netip.Addr) bool {
	for _, r := range s.Routes {
		if r.Dst == block && r.Gw == gw {
			return true
		}
	}
	return false
}

// blocks are the blocks the node's containers have addresses in.
func (n *tnode) blocks() []netip.Prefix {
	var out []netip.Prefix
	for _, x := range n.ctrs {
		b := netip.PrefixFrom(x.ip, blockBits).Masked()
		if !containsPrefix(out, b) {
			out = append(out, b)
		}
	}
	return out
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// key renders the state as sorted lines, so two snapshots compare
// whatever order the kernel dumped them in. The device's index is part of
// it: a recreated device would show.
func (s nodeState) key() string {
	var l []string
	if s.Device != nil {
		l = append(l, "device "+s.Device.String())
	}
	for _, e := range s.FDB {
		l = append(l, fmt.Sprintf("fdb %s dst %s permanent=%v", e.MAC, e.Dst, e.Permanent))
	}
	for _, e := range s.Neighs {
		l = append(l, fmt.Sprintf("neigh %s lladdr %s permanent=%v", e.IP, e.MAC, e.Permanent))
	}
	for _, r := range s.Routes {
		l = append(l, fmt.Sprintf("route %s via %s src %s onlink=%v", r.Dst, r.Gw, r.Src, r.OnLink))
	}
	l = append(l, fmt.Sprintf("peer set exists=%v %v", s.PeerSetExists, s.PeerSet))
	slices.Sort(l)
	return strings.Join(l, "\n")
}

// guardRules are the node's iptables rules of the VXLAN guard.
func (n *tnode) guardRules() string {
	n.c.t.Helper()
	var out []string
	for _, l := range strings.Split(string(n.ns.Run(n.c.t, "iptables-save", "-t", "filter")), "\n") {
		if strings.Contains(l, "zonenet vxlan") {
			out = append(out, l)
		}
	}
	if len(out) != 1 {
		n.c.t.Errorf("%s: %d VXLAN guard rules: %q", n.name, len(out), out)
	}
	return strings.Join(out, "\n")
}
