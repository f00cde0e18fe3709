package overlay

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestDeriveMAC(t *testing.T) {
	a, b := DeriveMAC("node-a"), DeriveMAC("node-a")
	if a.String() != b.String() {
		t.Fatalf("DeriveMAC is not stable: %s, %s", a, b)
	}
	if c := DeriveMAC("node-b"); c.String() == a.String() {
		t.Fatalf("two names, one MAC %s", a)
	}
	for _, n := range []string{"a", "node-a", "eu-west-1", ""} {
		m := DeriveMAC(n)
		if err := checkUnicastMAC(m); err != nil {
			t.Errorf("DeriveMAC(%q) = %s: %v", n, m, err)
		}
		if m[0]&2 == 0 {
			t.Errorf("DeriveMAC(%q) = %s is not locally administered", n, m)
		}
	}
}

func TestGateway6(t *testing.T) {
	got := Gateway6(netip.MustParseAddr("192.0.2.2"))
	if want := netip.MustParseAddr("fe80::c000:202"); got != want {
		t.Fatalf("Gateway6 = %s, want %s", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Underlay: netip.MustParseAddr("192.0.2.1"), NodeName: "n1"}
	if err := ok.withDefaults().validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no underlay", func(c *Config) { c.Underlay = netip.Addr{} }, "underlay"},
		{"v6 underlay", func(c *Config) { c.Underlay = netip.MustParseAddr("2001:db8::1") }, "underlay"},
		{"long device", func(c *Config) { c.Device = "zn-vxlan-too-long" }, "device"},
		{"vni", func(c *Config) { c.VNI = 1 << 24 }, "vni"},
		{"mtu", func(c *Config) { c.MTU = 20 }, "mtu"},
		{"no mac, no name", func(c *Config) { c.NodeName = "" }, "node name"},
		{"multicast mac", func(c *Config) { c.MAC = mac("01:00:5e:00:00:01") }, "multicast"},
		{"long set", func(c *Config) { c.PeerSet = strings.Repeat("s", 32) }, "peer set"},
		{"v6 source4", func(c *Config) { c.Source4 = netip.MustParseAddr("fd00::1") }, "source4"},
		{"v4 source6", func(c *Config) { c.Source6 = netip.MustParseAddr("10.0.1.1") }, "source6"},
	} {
		c := ok
		tc.mod(&c)
		err := c.withDefaults().validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %q", tc.name, err, tc.want)
		}
	}
}

func TestPlanFor(t *testing.T) {
	cfg := Config{Underlay: netip.MustParseAddr("192.0.2.1"), NodeName: "self"}.withDefaults()
	pfx := netip.MustParsePrefix
	peers := []Peer{
		{Name: "b", Underlay: netip.MustParseAddr("192.0.2.2"), VTEPMAC: mac("02:00:00:00:00:02"),
			Blocks: []netip.Prefix{pfx("10.0.1.64/26"), pfx("10.0.2.64/26"), pfx("fd00:0:3::4:0:0/96")}},
		{Name: "self", Underlay: cfg.Underlay, VTEPMAC: cfg.MAC, Blocks: []netip.Prefix{pfx("10.0.1.0/26")}},
		{Name: "c", Underlay: netip.MustParseAddr("192.0.2.3"), VTEPMAC: mac("02:00:00:00:00:03")},
		// Conflicts with b, which sorts first: b wins, d is reported.
		{Name: "d", Underlay: netip.MustParseAddr("192.0.2.4"), VTEPMAC: mac("02:00:00:00:00:04"),
			Blocks: []netip.Prefix{pfx("10.0.1.64/26")}},
		{Name: "e", Underlay: netip.MustParseAddr("192.0.2.2"), VTEPMAC: mac("02:00:00:00:00:05")},
		{Name: "f", Underlay: netip.MustParseAddr("192.0.2.6"), VTEPMAC: mac("02:00:00:00:00:02")},
		{Name: "g", Underlay: netip.MustParseAddr("192.0.2.7"), VTEPMAC: mac("02:00:00:00:00:07"),
			Blocks: []netip.Prefix{pfx("10.0.9.1/26")}},
		{Name: "h", Underlay: cfg.Underlay, VTEPMAC: mac("02:00:00:00:00:08")},
		{Name: "i", Underlay: netip.MustParseAddr("192.0.2.9"), VTEPMAC: nil},
	}
	p, err := planFor(cfg, peers)
	if err == nil {
		t.Fatal("planFor accepted conflicting peers")
	}
	for _, name := range []string{`"d"`, `"e"`, `"f"`, `"g"`, `"h"`, `"i"`} {
		if !strings.Contains(err.Error(), "peer "+name+" not programmed") {
			t.Errorf("error does not name peer %s: %v", name, err)
		}
	}
	for _, name := range []string{`"b"`, `"c"`, `"self"`} {
		if strings.Contains(err.Error(), "peer "+name+" not programmed") {
			t.Errorf("error names valid peer %s: %v", name, err)
		}
	}
	b := netip.MustParseAddr("192.0.2.2")
	ll := Gateway6(b)
	wantRoutes := map[netip.Prefix]netip.Addr{
		pfx("10.0.1.64/26"): b, pfx("10.0.2.64/26"): b, pfx("fd00:0:3::4:0:0/96"): ll,
	}
	if len(p.routes) != len(wantRoutes) {
		t.Fatalf("routes %v, want %v", p.routes, wantRoutes)
	}
	for dst, gw := range wantRoutes {
		if p.routes[dst] != gw {
			t.Errorf("route %s via %s, want via %s", dst, p.routes[dst], gw)
		}
	}
	if len(p.neighs) != 2 || p.neighs[b].String() != "02:00:00:00:00:02" || p.neighs[ll].String() != "02:00:00:00:00:02" {
		t.Errorf("neighbours %v", p.neighs)
	}
	// c has no blocks yet: FDB entry and set member, no neighbour.
	if len(p.fdb) != 2 || !p.fdb[fdbKey{"02:00:00:00:00:03", netip.MustParseAddr("192.0.2.3")}] {
		t.Errorf("fdb %v", p.fdb)
	}
	if len(p.members) != 2 || !p.members[b] || p.members[cfg.Underlay] {
		t.Errorf("members %v", p.members)
	}
}
