//go:build linux

package overlay_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/overlay"
	"github.com/zonenet/zonenet/test/cnitest"
)

// counts fails the test unless ch holds exactly the given number of
// changes of each op and kind, and nothing else.
func counts(t *testing.T, what string, ch overlay.Changes, want map[string]int) {
	t.Helper()
	total := 0
	for k, n := range want {
		op, kind, _ := strings.Cut(k, " ")
		if got := ch.Count(overlay.Op(op), overlay.Kind(kind)); got != n {
			t.Fatalf("%s: %d × %q, want %d; changes: %s", what, got, k, n, ch)
		}
		total += n
	}
	if len(ch) != total {
		t.Fatalf("%s: %d changes, want %d: %s", what, len(ch), total, ch)
	}
}

func TestThreeNodes(t *testing.T) {
	c := newCluster(t, 2, 1, 1)
	a, b, d := c.nodes[0], c.nodes[1], c.nodes[2]
	all := c.peers(a, b, d)
	for _, n := range c.nodes {
		counts(t, "first Reconcile on "+n.name, n.mustReconcile(all), map[string]int{
			"add fdb": 2, "set neigh": 4, "add route": 4, "add ipset": 2,
		})
	}
	a.expectEntries(b, d)
	b.expectEntries(a, d)
	d.expectEntries(a, b)

	srv := c.serve()
	c.reach(srv, a.ctrs[0], b, d)
	c.reach(srv, a.ctrs[1], b, d)
	c.reach(srv, b.ctrs[0], a, d)
	c.reach(srv, d.ctrs[0], a, b)

	// The same input again writes nothing: no Changes, and the kernel
	// reports no change to the device (a write of the device's MAC, even
	// the same one, would have flushed its neighbours).
	for _, n := range c.nodes {
		n.quiet(func() {
			if ch, err := n.ensure(); err != nil || len(ch) != 0 {
				t.Fatalf("second Ensure on %s: %v, %v", n.name, ch, err)
			}
			if ch := n.mustReconcile(all); len(ch) != 0 {
				t.Fatalf("second Reconcile on %s: %s", n.name, ch)
			}
		})
	}
	a.expectEntries(b, d)
	b.expectEntries(a, d)
	d.expectEntries(a, b)
	c.reach(srv, b.ctrs[0], a, d)

	var st overlay.State
	err := a.ns.Do(func() error {
		var err error
		st, err = overlay.Snapshot(a.cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Device == nil || st.Device.Name != a.cfg.Device || len(st.FDB) != 2 || len(st.Neighs) != 4 || len(st.Routes) != 4 {
		t.Fatalf("Snapshot on %s: %+v", a.name, st)
	}
	if !st.PeerSetExists || len(st.PeerSet) != 2 || st.PeerSet[0] != b.underlay || st.PeerSet[1] != d.underlay {
		t.Fatalf("Snapshot peer set on %s: %v %v, want %s %s", a.name, st.PeerSetExists, st.PeerSet, b.underlay, d.underlay)
	}
}

func TestPeerRemoved(t *testing.T) {
	c := newCluster(t, 1, 1, 1)
	a, b, d := c.nodes[0], c.nodes[1], c.nodes[2]
	for _, n := range c.nodes {
		n.mustReconcile(c.peers(a, b, d))
	}
	srv := c.serve()
	c.reach(srv, a.ctrs[0], b, d)

	// Someone else's route out of the overlay device: never ours to
	// delete, whatever the peer list says.
	foreign := cnitest.Subnet4(t)
	c.do(a.ns, func(h *netlink.Handle) error {
		return h.RouteAdd(&netlink.Route{LinkIndex: a.dev.Index, Dst: ipNet(foreign), Protocol: 4 /* static */})
	})

	counts(t, "Reconcile without "+d.name, a.mustReconcile(c.peers(a, b)), map[string]int{
		"del route": 2, "del neigh": 2, "del fdb": 1, "del ipset": 1,
	})
	a.expectEntries(b)
	found := false
	for _, r := range a.ns.Routes(t, netlink.FAMILY_V4) {
		found = found || (r.Dst != nil && r.Dst.String() == foreign.String())
	}
	if !found {
		t.Fatalf("Reconcile deleted the foreign route %s", foreign)
	}

	c.unreachable(srv, a.ctrs[0], d)
	c.reach(srv, a.ctrs[0], b)
	c.reach(srv, b.ctrs[0], a, d)
	b.expectEntries(a, d)

	// Back in the list, it is programmed again.
	a.mustReconcile(c.peers(a, b, d))
	a.expectEntries(b, d)
	c.reach(srv, a.ctrs[0], b, d)
}

func TestPeerChanged(t *testing.T) {
	c := newCluster(t, 1, 1, 1)
	a, b, d := c.nodes[0], c.nodes[1], c.nodes[2]
	for _, n := range c.nodes {
		n.mustReconcile(c.peers(a, b, d))
	}
	srv := c.serve()
	c.reach(srv, a.ctrs[0], b, d)

	// b's VTEP MAC changes. Writing it flushes b's own neighbour
	// entries; b's next Reconcile puts them back.
	b.cfg.MAC = net.HardwareAddr{0x02, 0x5a, 0x00, 0xbe, 0xef, 0x01}
	ch, err := b.ensure()
	if err != nil {
		t.Fatal(err)
	}
	counts(t, "Ensure with a new MAC", ch, map[string]int{"set link": 1})
	if got := b.entries(); len(got) != 6 { // 2 FDB + 4 routes, neighbours gone
		t.Fatalf("after the MAC write %s holds %q", b.name, got)
	}
	counts(t, "Reconcile after the MAC write", b.mustReconcile(c.peers(a, b, d)), map[string]int{"set neigh": 4})
	b.expectEntries(a, d)

	// Its peers still send to the old MAC, which b now drops.
	c.unreachable(srv, a.ctrs[0], b)
	for _, n := range []*node{a, d} {
		counts(t, "Reconcile on "+n.name+" after "+b.name+"'s MAC changed", n.mustReconcile(c.peers(a, b, d)),
			map[string]int{"del fdb": 1, "add fdb": 1, "set neigh": 2})
	}
	a.expectEntries(b, d)
	d.expectEntries(a, b)
	c.reach(srv, a.ctrs[0], b, d)
	c.reach(srv, d.ctrs[0], a, b)

	// d moves to a new underlay address: its device is recreated with
	// the new local address, and its peers follow.
	old, moved := d.underlay, cnitest.Nth(c.ulNet, 200)
	// (Old first: deleting a primary address takes its secondaries along.)
	d.ns.DelAddr(t, d.uplink, netip.PrefixFrom(old, 24).String())
	c.do(d.ns, func(h *netlink.Handle) error { return addAddr(h, d.uplink, netip.PrefixFrom(moved, 24)) })
	d.underlay, d.cfg.Underlay = moved, moved
	ch, err = d.ensure()
	if err != nil {
		t.Fatal(err)
	}
	if ch.Count(overlay.Del, overlay.KindLink) != 1 || ch.Count(overlay.Add, overlay.KindLink) != 1 || d.dev.Local != moved {
		t.Fatalf("Ensure with a new underlay: %s; device %+v", ch, d.dev)
	}
	d.mustReconcile(c.peers(a, b, d))
	d.expectEntries(a, b)
	c.unreachable(srv, a.ctrs[0], d)
	for _, n := range []*node{a, b} {
		counts(t, "Reconcile on "+n.name+" after "+d.name+" moved", n.mustReconcile(c.peers(a, b, d)), map[string]int{
			"del route": 2, "del neigh": 2, "del fdb": 1, "add fdb": 1, "set neigh": 2, "add route": 2,
			"del ipset": 1, "add ipset": 1,
		})
	}
	a.expectEntries(b, d)
	c.reach(srv, a.ctrs[0], b, d)
	c.reach(srv, d.ctrs[0], a, b)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// The node's own traffic to a remote container leaves with the preferred
// source, an address in the node's block, so the answer comes back over
// the overlay rather than unencapsulated over the underlay.
func TestHostSource(t *testing.T) {
	c := newCluster(t, 1, 1)
	a, b := c.nodes[0], c.nodes[1]
	for _, n := range c.nodes {
		n.mustReconcile(c.peers(a, b))
	}
	who4 := cnitest.WhoAmITCP(t, b.ctrs[0].ns, netip.AddrPortFrom(b.ctrs[0].ip, 0).String())
	who6 := cnitest.WhoAmITCP(t, b.ctrs[0].ns, netip.AddrPortFrom(b.ctrs[0].ip6, 0).String())
	if got, err := cnitest.AskTCP(a.ns, who4, 3*time.Second); err != nil || got != a.underlay.String() {
		t.Fatalf("without a source, %s's own traffic arrives from %q (%v), want its underlay address %s", a.name, got, err, a.underlay)
	}

	a.cfg.Source4, a.cfg.Source6 = a.gw, a.gw6
	counts(t, "Reconcile with sources", a.mustReconcile(c.peers(a, b)), map[string]int{"del route": 2, "add route": 2})
	if ch := a.mustReconcile(c.peers(a, b)); len(ch) != 0 {
		t.Fatalf("second Reconcile with sources: %s", ch)
	}
	var st overlay.State
	if err := a.ns.Do(func() error { var err error; st, err = overlay.Snapshot(a.cfg); return err }); err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Routes {
		if want := map[bool]netip.Addr{true: a.gw, false: a.gw6}[r.Dst.Addr().Is4()]; r.Src != want {
			t.Fatalf("route %s src %s, want %s", r.Dst, r.Src, want)
		}
	}
	for who, want := range map[string]netip.Addr{who4: a.gw, who6: a.gw6} {
		if got, err := cnitest.AskTCP(a.ns, who, 3*time.Second); err != nil || got != want.String() {
			t.Fatalf("%s's own traffic to %s arrives from %q (%v), want %s", a.name, who, got, err, want)
		}
	}
}
