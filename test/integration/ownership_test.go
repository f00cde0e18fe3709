//go:build linux

package integration

import (
	"strings"
	"testing"

	"github.com/zonenet/zonenet/test/cnitest"
)

// A refused ADD (the container already has an interface of that name)
// followed by the runtime's DEL must leave that interface alone: it is not
// ours, even when it is a veth.
func TestDelAfterRefusedAddSparesForeignVeth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	c := e.newCtr()
	peer := cnitest.Unique(t, "zfp")
	c.NS.AddVethPair(t, c.IfName, peer)
	if _, cerr := e.run("ADD", c, c.Conf); cerr == nil {
		t.Fatal("ADD succeeded although the container already has the interface")
	}
	e.del(c)
	if !c.NS.HasLink(t, c.IfName) || !c.NS.HasLink(t, peer) {
		t.Fatalf("DEL after a refused ADD deleted the container's own veth %s/%s", c.IfName, peer)
	}
}

// A failure after the veth is already on the new bridge must still take
// the whole zone setup away: the host looks as it did before.
func TestRollbackAfterVethOnFreshHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	c := e.newCtr()
	before := e.snapshot()
	call := e.call("ADD", c, c.Conf)
	call.Env = append(call.Env, "ZONENET_TEST_FAULT=after-veth")
	if out, cerr := cnitest.Exec(t, call); cerr == nil {
		t.Fatalf("ADD with an injected fault succeeded:\n%s", out)
	}
	e.expectSame(before, "ADD that failed after attaching the veth")
	if _, ok := e.lease(c); ok {
		t.Error("failed ADD left a lease")
	}
}

// A bridge the user made and named in the config is used but never
// deleted; one that carries someone else's alias is refused.
func TestUserBridges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	br := e.conf.Zones[0].Bridge
	e.host.Run(t, "ip", "link", "add", br, "type", "bridge")
	c := e.newCtr()
	e.add(c)
	e.del(c)
	e.gc()
	if !e.host.HasLink(t, br) {
		t.Fatalf("GC deleted bridge %s, which the user made", br)
	}

	e2 := newEnv(t, "1.1.0")
	br2 := e2.conf.Zones[0].Bridge
	e2.host.Run(t, "ip", "link", "add", br2, "type", "bridge")
	e2.host.Run(t, "ip", "link", "set", br2, "alias", "owned by another tool")
	c2 := e2.newCtr()
	before := e2.snapshot()
	_, cerr := e2.run("ADD", c2, c2.Conf)
	expectCode(t, "ADD onto a bridge with a foreign alias", cerr, 7)
	if cerr != nil && !strings.Contains(cerr.Msg, br2) {
		t.Errorf("message %q does not name the bridge", cerr.Msg)
	}
	e2.expectSame(before, "refused ADD onto a foreign bridge")
}

// CHECK notices a zone that lost its gateway or a host veth that went
// down; the next ADD repairs the gateway.
func TestCheckBridgeState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	z := e.conf.Zones[0]
	c := e.newCtr()
	e.add(c)
	if cerr := e.check(c); cerr != nil {
		t.Fatalf("CHECK of a fresh attachment: %v", cerr)
	}
	gw := zoneGateway(z)
	e.host.Run(t, "ip", "addr", "flush", "dev", z.Bridge)
	if cerr := e.check(c); cerr == nil {
		t.Error("CHECK passed with the gateway gone from the bridge")
	}
	c2 := e.newCtr()
	e.add(c2)
	found := false
	for _, p := range e.host.Prefixes(t, z.Bridge, 2 /* AF_INET */) {
		found = found || p.Addr() == gw
	}
	if !found {
		t.Errorf("ADD did not put gateway %s back on %s", gw, z.Bridge)
	}
	if cerr := e.check(c); cerr != nil {
		t.Errorf("CHECK after the repair: %v", cerr)
	}
	att, _ := e.lease(c)
	e.host.Run(t, "ip", "link", "set", att.HostVeth, "down")
	if cerr := e.check(c); cerr == nil {
		t.Error("CHECK passed with the host veth down")
	}
}

// Chained after another plugin, ADD passes the earlier result on with its
// own interfaces, addresses and routes appended, indices shifted.
func TestAddMergesPrevResult(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	c := e.newCtr()
	prev := `{"cniVersion":"1.1.0","interfaces":[{"name":"earlier0"}],` +
		`"ips":[{"address":"192.0.2.7/24","interface":0}]}`
	c.Conf = c.Conf.WithPrev([]byte(prev))
	res := e.add(c)
	if len(res.Interfaces) != 4 || res.Interfaces[0].Name != "earlier0" {
		t.Fatalf("interfaces = %v, want earlier0 first, then bridge, host veth, container", res.Interfaces)
	}
	if len(res.IPs) != 2 || res.IPs[0].Address.String() != "192.0.2.7/24" {
		t.Fatalf("ips = %v, want the earlier address first", res.IPs)
	}
	if idx := res.IPs[1].Interface; idx == nil || *idx != 3 || res.Interfaces[3].Name != c.IfName {
		t.Errorf("our address points at interface %v, want 3 (%s)", idx, c.IfName)
	}
	e.del(c)
}
