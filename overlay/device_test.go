//go:build linux

package overlay_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/overlay"
	"github.com/zonenet/zonenet/test/cnitest"
)

func TestEnsureAdopts(t *testing.T) {
	c := newCluster(t, 0)
	a := c.nodes[0]
	want := overlay.Device{Name: a.cfg.Device, Index: a.dev.Index, MAC: overlay.DeriveMAC(a.name), MTU: 1450,
		VNI: overlay.DefaultVNI, Port: overlay.DefaultPort, Local: a.underlay, Up: true}
	if a.dev.String() != want.String() {
		t.Fatalf("device %s, want %s", a.dev, want)
	}
	vx, ok := a.ns.Link(t, a.cfg.Device).(*netlink.Vxlan)
	if !ok || vx.Learning || vx.Group != nil || vx.SrcAddr.String() != a.underlay.String() || vx.Port != 4789 || vx.VxlanId != 1 {
		t.Fatalf("kernel holds %+v", vx)
	}

	// What drifted is put back, one write per attribute.
	c.do(a.ns, func(h *netlink.Handle) error {
		if err := h.LinkSetMTU(vx, 1300); err != nil {
			return err
		}
		return h.LinkSetDown(vx)
	})
	ch, err := a.ensure()
	if err != nil {
		t.Fatal(err)
	}
	counts(t, "Ensure after drift", ch, map[string]int{"set link": 2})
	if a.dev.MTU != 1450 || !a.dev.Up {
		t.Fatalf("device after repair: %s", a.dev)
	}

	// MTU follows the underlay link; an explicit one wins.
	c.do(a.ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(a.uplink)
		if err != nil {
			return err
		}
		return h.LinkSetMTU(l, 9000)
	})
	if _, err := a.ensure(); err != nil || a.dev.MTU != 8950 {
		t.Fatalf("Ensure on a 9000 underlay: mtu %d, %v", a.dev.MTU, err)
	}
	a.cfg.MTU = 1400
	if _, err := a.ensure(); err != nil || a.dev.MTU != 1400 {
		t.Fatalf("Ensure with mtu 1400: mtu %d, %v", a.dev.MTU, err)
	}

	// A new VNI cannot be set in place: the device is recreated.
	a.cfg.VNI = 7
	ch, err = a.ensure()
	if err != nil {
		t.Fatal(err)
	}
	if ch.Count(overlay.Del, overlay.KindLink) != 1 || ch.Count(overlay.Add, overlay.KindLink) != 1 || a.dev.VNI != 7 || !a.dev.Up {
		t.Fatalf("Ensure with vni 7: %s; %s", ch, a.dev)
	}
	if ch, err := a.ensure(); err != nil || len(ch) != 0 {
		t.Fatalf("Ensure again: %s, %v", ch, err)
	}

	// A link of that name that is not VXLAN is someone else's.
	other := a.cfg
	other.Device = a.uplink
	err = a.ns.Do(func() error { _, _, err := overlay.Ensure(other); return err })
	if err == nil || !strings.Contains(err.Error(), "not vxlan") {
		t.Fatalf("Ensure over a veth: %v", err)
	}
	if _, ok := a.ns.Link(t, a.uplink).(*netlink.Veth); !ok {
		t.Fatal("Ensure replaced the veth")
	}
	err = a.ns.Do(func() error { _, err := overlay.Reconcile(other, nil); return err })
	if err == nil {
		t.Fatal("Reconcile on a veth succeeded")
	}

	// Reconcile before Ensure says what is missing.
	missing := a.cfg
	missing.Device = cnitest.Unique(t, "znv")
	err = a.ns.Do(func() error { _, err := overlay.Reconcile(missing, nil); return err })
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Reconcile without a device: %v", err)
	}

	// The underlay address must be local when the MTU is derived.
	stray := a.cfg
	stray.MTU = 0
	stray.Underlay = cnitest.Nth(cnitest.Subnet4(t), 9)
	err = a.ns.Do(func() error { _, _, err := overlay.Ensure(stray); return err })
	if err == nil || !strings.Contains(err.Error(), "no local link") {
		t.Fatalf("Ensure with a foreign underlay: %v", err)
	}
}

func TestRemove(t *testing.T) {
	c := newCluster(t, 1, 1)
	a, b := c.nodes[0], c.nodes[1]
	a.mustReconcile(c.peers(a, b))
	r := acl.Exec{LockPath: filepath.Join(t.TempDir(), "iptables.lock")}
	guard := acl.VXLANGuard{Port: overlay.DefaultPort, PeerSet: overlay.DefaultPeerSet}
	if err := a.ns.Do(func() error { return acl.EnsureVXLANGuard(r, guard) }); err != nil {
		t.Fatal(err)
	}
	before := len(a.ns.Links(t))

	// The set cannot go while the guard refers to it; the device goes
	// all the same, and the error says why.
	err := a.ns.Do(func() error { return overlay.Remove(a.cfg) })
	if err == nil || !strings.Contains(err.Error(), overlay.DefaultPeerSet) {
		t.Fatalf("Remove under the guard: %v", err)
	}
	if err := a.ns.Do(func() error { return acl.RemoveVXLANGuard(r) }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := a.ns.Do(func() error { return overlay.Remove(a.cfg) }); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}

	if a.ns.HasLink(t, a.cfg.Device) {
		t.Fatal("the device survived Remove")
	}
	if n := len(a.ns.Links(t)); n != before-1 {
		t.Fatalf("%d links after Remove, want %d", n, before-1)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		for _, rt := range a.ns.Routes(t, fam) {
			if rt.Protocol == overlay.RouteProtocol {
				t.Fatalf("route left behind: %s", rt)
			}
		}
	}
	var st overlay.State
	if err := a.ns.Do(func() error { st, err = overlay.Snapshot(a.cfg); return err }); err != nil {
		t.Fatal(err)
	}
	if st.Device != nil || st.PeerSetExists {
		t.Fatalf("Snapshot after Remove: %+v", st)
	}
	if out := a.ns.Run(t, "iptables-save", "-t", "filter"); strings.Contains(string(out), "zonenet") {
		t.Fatalf("iptables after Remove:\n%s", out)
	}
	if out := a.ns.Run(t, "ipset", "list", "-n"); strings.TrimSpace(string(out)) != "" {
		t.Fatalf("ipsets after Remove: %s", out)
	}
	if _, err := a.reconcile(c.peers(a, b)); err == nil {
		t.Fatal("Reconcile after Remove succeeded")
	}
}

func TestEnsureRejectsBadConfig(t *testing.T) {
	cnitest.RequireRoot(t)
	ns := cnitest.NewNS(t, "znt-ovbad")
	cfg := overlay.Config{Device: cnitest.Unique(t, "znv"), Underlay: cnitest.Nth(cnitest.Subnet4(t), 1), MTU: 1450,
		MAC: net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}}
	err := ns.Do(func() error { _, _, err := overlay.Ensure(cfg); return err })
	if err == nil || !strings.Contains(err.Error(), "multicast") {
		t.Fatalf("Ensure with a multicast MAC: %v", err)
	}
	if ns.HasLink(t, cfg.Device) {
		t.Fatal("an invalid config reached the kernel")
	}
	if err := ns.Do(func() error { return overlay.Remove(cfg) }); err != nil {
		t.Fatalf("Remove of nothing: %v", err)
	}
}
