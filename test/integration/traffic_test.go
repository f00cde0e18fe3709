//go:build linux

package integration

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/test/cnitest"
)

// threeZones sets up the reference topology of the mission: frontend
// (default), backend (range with an exclusion, chosen for the "payments"
// Kubernetes namespace) and a dual-stack mgmt zone with a gateway that is
// not the first address.
func threeZones(e *env) (front, back, mgmt cnitest.Zone) {
	front = e.conf.Zones[0]
	back = e.zone("backend")
	bs := netip.MustParsePrefix(back.Subnet)
	back.RangeStart = cnitest.Nth(bs, 10).String()
	back.RangeEnd = cnitest.Nth(bs, 200).String()
	back.Exclude = []string{cnitest.Nth(bs, 50).String()}
	mgmt = e.zone("mgmt")
	mgmt.Subnet6 = cnitest.Subnet6(e.t).String()
	mgmt.Gateway = cnitest.Nth(netip.MustParsePrefix(mgmt.Subnet), 254).String()
	e.conf.Zones = []cnitest.Zone{front, back, mgmt}
	e.conf.DefaultZone = "frontend"
	e.conf.NamespaceZones = map[string]string{"payments": "backend"}
	e.conf.Capabilities = map[string]bool{"portMappings": true, "ips": true, "mac": true}
	return front, back, mgmt
}

func inRange(a netip.Addr, z cnitest.Zone) bool {
	return a.Compare(netip.MustParseAddr(z.RangeStart)) >= 0 && a.Compare(netip.MustParseAddr(z.RangeEnd)) <= 0
}

// TestTraffic attaches containers to zones by every selector, then checks
// the addresses they got and that TCP flows between containers of a zone
// and to the zone gateway on the host.
func TestTraffic(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	front, back, mgmt := threeZones(e)

	attach := func(c *ctr, z cnitest.Zone) attachment {
		t.Helper()
		e.add(c)
		return e.expectAttached(c, z)
	}

	// Default zone.
	a, b := e.newCtr(), e.newCtr()
	attA, attB := attach(a, front), attach(b, front)
	if attA.ip4() == attB.ip4() {
		t.Fatalf("two containers got the same address %s", attA.ip4())
	}

	// CNI_ARGS ZONE= and the namespaceZones map pick backend; addresses
	// come from its range and never the excluded one.
	c := e.newCtr()
	c.Args = "ZONE=backend"
	attC := attach(c, back)
	d := e.newCtr()
	d.Args = "K8S_POD_NAMESPACE=payments;K8S_POD_NAME=db-0"
	attD := attach(d, back)
	for _, att := range []attachment{attC, attD} {
		if !inRange(att.ip4(), back) || att.ip4().String() == back.Exclude[0] {
			t.Errorf("backend container got %s, want inside %s-%s and not %s", att.ip4(), back.RangeStart, back.RangeEnd, back.Exclude[0])
		}
	}

	// args.cni.zone picks the dual-stack zone, and wins over CNI_ARGS and
	// the namespace map; CNI_ARGS ZONE wins over the namespace map.
	m1 := e.newCtr()
	m1.Conf.SetArgs(cnitest.CNIArgs{Zone: "mgmt"})
	m1.Args = "ZONE=backend;K8S_POD_NAMESPACE=payments"
	attM1 := attach(m1, mgmt)
	m2 := e.newCtr()
	m2.Args = "ZONE=mgmt;K8S_POD_NAMESPACE=payments"
	attM2 := attach(m2, mgmt)

	// Static address and MAC, by runtimeConfig, by args.cni and by
	// CNI_ARGS.
	fs := netip.MustParsePrefix(front.Subnet)
	s1 := e.newCtr()
	s1.Conf.RuntimeConfig = &cnitest.RuntimeConfig{IPs: []string{netip.PrefixFrom(cnitest.Nth(fs, 7), 24).String()}, MAC: "aa:bb:cc:00:00:01"}
	attS1 := attach(s1, front)
	s2 := e.newCtr()
	s2.Conf.SetArgs(cnitest.CNIArgs{IPs: []string{cnitest.Nth(fs, 8).String()}, MAC: "aa:bb:cc:00:00:02"})
	attS2 := attach(s2, front)
	s3 := e.newCtr()
	s3.Args = "IP=" + cnitest.Nth(fs, 9).String() + ";MAC=aa:bb:cc:00:00:03"
	attS3 := attach(s3, front)
	for i, tc := range []struct {
		att      attachment
		ip, mac  string
		selector string
	}{
		{attS1, cnitest.Nth(fs, 7).String(), "aa:bb:cc:00:00:01", "runtimeConfig"},
		{attS2, cnitest.Nth(fs, 8).String(), "aa:bb:cc:00:00:02", "args.cni"},
		{attS3, cnitest.Nth(fs, 9).String(), "aa:bb:cc:00:00:03", "CNI_ARGS"},
	} {
		if tc.att.ip4().String() != tc.ip || tc.att.MAC != tc.mac {
			t.Errorf("static #%d by %s: got %s %s, want %s %s", i, tc.selector, tc.att.ip4(), tc.att.MAC, tc.ip, tc.mac)
		}
	}

	// No address is handed out twice.
	seen := map[netip.Addr]string{}
	for _, x := range []struct {
		id  string
		att attachment
	}{{a.ID, attA}, {b.ID, attB}, {c.ID, attC}, {d.ID, attD}, {m1.ID, attM1}, {m2.ID, attM2}, {s1.ID, attS1}, {s2.ID, attS2}, {s3.ID, attS3}} {
		for _, p := range x.att.IPs {
			if other, dup := seen[p.Addr()]; dup {
				t.Errorf("%s handed to %s and %s", p.Addr(), other, x.id)
			}
			seen[p.Addr()] = x.id
		}
	}

	// TCP inside the zone, both ways, and to the gateway on the host.
	srvA := cnitest.EchoTCP(t, a.NS, hostPort(attA.ip4(), 7001), "A")
	srvB := cnitest.EchoTCP(t, b.NS, hostPort(attB.ip4(), 7001), "B")
	srvHost := cnitest.EchoTCP(t, e.host, hostPort(zoneGateway(front), 0), "host")
	cnitest.ExpectTCP(t, a.NS, srvB, "B")
	cnitest.ExpectTCP(t, b.NS, srvA, "A")
	cnitest.ExpectTCP(t, a.NS, srvHost, "host")
	cnitest.ExpectTCP(t, s1.NS, srvA, "A") // a static address works like any other

	// The same in the backend zone, which has its own bridge.
	srvD := cnitest.EchoTCP(t, d.NS, hostPort(attD.ip4(), 7002), "D")
	cnitest.ExpectTCP(t, c.NS, srvD, "D")

	// Dual stack: both families between the two mgmt containers and to the
	// gateways on the host.
	m1.NS.WaitAddrsReady(t, 5*time.Second)
	m2.NS.WaitAddrsReady(t, 5*time.Second)
	e.host.WaitAddrsReady(t, 5*time.Second)
	srvM2v4 := cnitest.EchoTCP(t, m2.NS, hostPort(attM2.ip4(), 7003), "M2v4")
	srvM2v6 := cnitest.EchoTCP(t, m2.NS, hostPort(attM2.ip6(), 7003), "M2v6")
	cnitest.ExpectTCP(t, m1.NS, srvM2v4, "M2v4")
	cnitest.ExpectTCP(t, m1.NS, srvM2v6, "M2v6")
	srvGW6 := cnitest.EchoTCP(t, e.host, hostPort(zoneGateway6(mgmt), 0), "gw6")
	cnitest.ExpectTCP(t, m1.NS, srvGW6, "gw6")
	srvGW4 := cnitest.EchoTCP(t, e.host, hostPort(zoneGateway(mgmt), 0), "gw4")
	cnitest.ExpectTCP(t, m1.NS, srvGW4, "gw4")

	// Every container leaves cleanly.
	all := []*ctr{a, b, c, d, m1, m2, s1, s2, s3}
	atts := []attachment{attA, attB, attC, attD, attM1, attM2, attS1, attS2, attS3}
	for i, x := range all {
		e.del(x)
		e.expectDetached(x, atts[i])
	}
	if l := e.leases(); len(l) != 0 {
		t.Errorf("leases left: %s", strings.Join(cnitest.LeaseLines(l), "\n"))
	}
	if v := e.host.HostVeths(t); len(v) != 0 {
		t.Errorf("host veths left: %v", mapsKeys(v))
	}
}

func mapsKeys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}
