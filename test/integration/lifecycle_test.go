//go:build linux

package integration

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/test/cnitest"
)

// TestDelIdempotent covers the DELs runtimes really send: twice in a row
// (CRI does), with an empty CNI_NETNS (CRI's second DEL), and after the
// namespace is gone (a container that died first).
func TestDelIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.0.0")
	z := e.conf.Zones[0]

	t.Run("twice", func(t *testing.T) {
		e := e.sub(t)
		c := e.newCtr()
		e.add(c)
		att := e.expectAttached(c, z)
		e.del(c)
		e.del(c)
		e.expectDetached(c, att)
	})
	t.Run("empty-netns", func(t *testing.T) {
		e := e.sub(t)
		c := e.newCtr()
		e.add(c)
		att := e.expectAttached(c, z)
		call := e.call("DEL", c, c.withPrev())
		call.Netns = ""
		cnitest.MustExec(t, call)
		e.expectDetached(c, att)
		cnitest.MustExec(t, call)
	})
	t.Run("netns-gone", func(t *testing.T) {
		e := e.sub(t)
		c := e.newCtr()
		e.add(c)
		att := e.expectAttached(c, z)
		c.NS.Delete(t)
		e.del(c)
		e.expectDetached(c, att)
		e.del(c)
	})
	t.Run("never-added", func(t *testing.T) {
		e := e.sub(t)
		before := e.snapshot()
		c := e.newCtr()
		e.del(c)
		e.expectSame(before, "DEL of an unknown container")
	})
	if v := e.host.HostVeths(t); len(v) != 0 {
		t.Errorf("host veths left: %v", mapsKeys(v))
	}
	if l := e.leases(); len(l) != 0 {
		t.Errorf("leases left: %v", cnitest.LeaseLines(l))
	}
}

// sub is the same environment seen from a subtest.
func (e *env) sub(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// TestGC attaches three containers and garbage-collects with only one of
// them listed as valid: the others lose their lease, veth and rules, the
// valid one keeps working; a GC with an empty list then removes the zone
// bridge too.
func TestGC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	z := e.conf.Zones[0]
	e.conf.Capabilities = map[string]bool{"portMappings": true}
	var cs []*ctr
	var atts []attachment
	for i := 0; i < 3; i++ {
		c := e.newCtr()
		c.Conf.RuntimeConfig = &cnitest.RuntimeConfig{PortMappings: []cnitest.PortMapping{{HostPort: 19000 + i, ContainerPort: 80, Protocol: "tcp"}}}
		e.add(c)
		cs = append(cs, c)
		atts = append(atts, e.expectAttached(c, z))
	}
	// GC lists arrive with the "cni.dev/attachments" spelling too.
	keep := cs[0]
	conf := e.conf
	conf.Extra = map[string]any{"cni.dev/attachments": []cnitest.Attachment{keep.key()}}
	if _, cerr := e.run("GC", nil, conf); cerr != nil {
		t.Fatalf("GC (cni.dev/attachments): code %d: %s", cerr.Code, cerr.Msg)
	}
	e.expectAttached(keep, z)
	for i := 1; i < 3; i++ {
		e.expectDetached(cs[i], atts[i])
	}
	if got := e.host.HostVeths(t); len(got) != 1 || got[atts[0].HostVeth] == nil {
		t.Errorf("host veths after GC: %v, want only %s", mapsKeys(got), atts[0].HostVeth)
	}
	if got := e.leases(); len(got) != 1 {
		t.Errorf("leases after GC: %v, want only %s", cnitest.LeaseLines(got), keep.ID)
	}
	// The survivor still has its network.
	srv := cnitest.EchoTCP(t, e.host, hostPort(zoneGateway(z), 0), "gw")
	cnitest.ExpectTCP(t, keep.NS, srv, "gw")
	if cerr := e.check(keep); cerr != nil {
		t.Errorf("CHECK of the kept container after GC: code %d: %s", cerr.Code, cerr.Msg)
	}

	// A GC that lists a container we never saw is harmless.
	e.gcList([]cnitest.Attachment{keep.key(), {ContainerID: "never-seen", IfName: "eth0"}})
	e.expectAttached(keep, z)

	e.del(keep)
	e.expectDetached(keep, atts[0])
	e.gc()
	if e.host.HasLink(t, z.Bridge) {
		t.Errorf("zone bridge %s kept after GC with no attachment left", z.Bridge)
	}
}

// TestCheckDetectsDrift: CHECK passes on an intact attachment and fails
// once someone removes the container's address or the host veth.
func TestCheckDetectsDrift(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.0.0")
	z := e.conf.Zones[0]

	a := e.newCtr()
	e.add(a)
	attA := e.expectAttached(a, z)
	if cerr := e.check(a); cerr != nil {
		t.Fatalf("CHECK of an intact attachment: code %d: %s", cerr.Code, cerr.Msg)
	}
	a.NS.DelAddr(t, a.IfName, attA.IPs[0].String())
	if cerr := e.check(a); cerr == nil {
		t.Errorf("CHECK passed after the container address %s was removed", attA.IPs[0])
	}

	b := e.newCtr()
	e.add(b)
	attB := e.expectAttached(b, z)
	e.host.DelLink(t, attB.HostVeth)
	if cerr := e.check(b); cerr == nil {
		t.Errorf("CHECK passed after the host veth %s was removed", attB.HostVeth)
	}

	c := e.newCtr()
	e.add(c)
	attC := e.expectAttached(c, z)
	// Detach the host veth from the zone bridge.
	err := e.host.WithHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(attC.HostVeth)
		if err != nil {
			return err
		}
		return h.LinkSetNoMaster(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	if cerr := e.check(c); cerr == nil {
		t.Errorf("CHECK passed after the host veth %s left bridge %s", attC.HostVeth, z.Bridge)
	}

	// CHECK compares against prevResult: a result naming another address
	// than the one the container has must fail.
	d := e.newCtr()
	e.add(d)
	attD := e.expectAttached(d, z)
	forged := cnitest.Nth(netip.MustParsePrefix(z.Subnet), 200)
	prev := strings.ReplaceAll(string(d.Out), `"`+attD.ip4().String()+`/`, `"`+forged.String()+`/`)
	if prev == string(d.Out) {
		t.Fatalf("could not find %s in the ADD result:\n%s", attD.ip4(), d.Out)
	}
	if _, cerr := e.run("CHECK", d, d.Conf.WithPrev([]byte(prev))); cerr == nil {
		t.Errorf("CHECK passed with a prevResult naming %s while the container has %s", forged, attD.ip4())
	}
	if cerr := e.check(d); cerr != nil {
		t.Errorf("CHECK with the true prevResult: code %d: %s", cerr.Code, cerr.Msg)
	}

	for i, x := range []*ctr{a, b, c, d} {
		e.del(x)
		e.expectDetached(x, []attachment{attA, attB, attC, attD}[i])
	}
}

// TestExhaustion fills a zone whose range holds two addresses: the third
// ADD fails with code 11 and changes nothing, STATUS reports code 50 until
// an address is freed, and the excluded address is never handed out.
func TestExhaustion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	z := &e.conf.Zones[0]
	sn := netip.MustParsePrefix(z.Subnet)
	z.RangeStart, z.RangeEnd = cnitest.Nth(sn, 10).String(), cnitest.Nth(sn, 12).String()
	z.Exclude = []string{cnitest.Nth(sn, 11).String()}

	if cerr := e.status(); cerr != nil {
		t.Errorf("STATUS on an empty zone: code %d: %s", cerr.Code, cerr.Msg)
	}
	a, b := e.newCtr(), e.newCtr()
	e.add(a)
	e.add(b)
	attA, attB := e.expectAttached(a, *z), e.expectAttached(b, *z)
	got := []string{attA.ip4().String(), attB.ip4().String()}
	if !(got[0] == z.RangeStart && got[1] == z.RangeEnd) && !(got[1] == z.RangeStart && got[0] == z.RangeEnd) {
		t.Errorf("addresses %v, want %s and %s (%s is excluded)", got, z.RangeStart, z.RangeEnd, z.Exclude[0])
	}

	before := e.snapshot()
	c := e.newCtr()
	ctrBefore := cnitest.Snapshot(t, c.NS, "", "")
	_, cerr := e.run("ADD", c, c.Conf)
	expectCode(t, "ADD into a full zone", cerr, 11)
	if cerr != nil && !strings.Contains(cerr.Msg+cerr.Details, z.Name) {
		t.Errorf("exhaustion error does not name zone %s: %q", z.Name, cerr.Msg)
	}
	e.expectSame(before, "ADD into a full zone")
	if d := ctrBefore.Diff(cnitest.Snapshot(t, c.NS, "", "")); d != "" {
		t.Errorf("failed ADD changed the container namespace:\n%s", d)
	}
	expectCode(t, "STATUS with the default zone full", e.status(), 50)

	e.del(a)
	if cerr := e.status(); cerr != nil {
		t.Errorf("STATUS after freeing an address: code %d: %s", cerr.Code, cerr.Msg)
	}
	e.add(c)
	if attC := e.expectAttached(c, *z); attC.ip4() != attA.ip4() {
		t.Errorf("ADD after a release got %s, want the freed %s", attC.ip4(), attA.ip4())
	}
	e.del(b)
	e.del(c)
}
