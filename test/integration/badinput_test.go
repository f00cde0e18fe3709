//go:build linux

package integration

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/test/cnitest"
)

// TestBadInput feeds ADD every kind of bad input a runtime or a user can
// produce. Each must fail with the right CNI code and a message that names
// the offending key or value, and must change nothing: not the host
// namespace (links, addresses, routes, sysctls, firewall), not the store,
// not the container.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	z := e.conf.Zones[0]
	sn := netip.MustParsePrefix(z.Subnet)
	e.conf.Capabilities = map[string]bool{"portMappings": true, "ips": true, "mac": true}
	e.conf.NamespaceZones = map[string]string{"payments": "frontend"}

	// One live attachment, so "address taken" can be tested and the store,
	// bridge and rules exist.
	owner := e.newCtr()
	e.add(owner)
	taken := e.expectAttached(owner, z).ip4()

	victim := e.newCtr()
	hostBefore := e.snapshot()
	ctrBefore := cnitest.Snapshot(t, victim.NS, "", "")

	withZone := func(f func(z *cnitest.Zone)) func(c *cnitest.NetConf, call *cnitest.Call) {
		return func(c *cnitest.NetConf, _ *cnitest.Call) {
			zs := append([]cnitest.Zone(nil), c.Zones...)
			f(&zs[0])
			c.Zones = zs
		}
	}
	other := cnitest.Subnet4(t)
	for _, tc := range []struct {
		name   string
		mutate func(c *cnitest.NetConf, call *cnitest.Call)
		raw    string   // replaces the whole config when set
		codes  []uint   // acceptable CNI codes
		names  []string // each must appear in the error (alternatives split by |)
	}{
		{name: "invalid-json", raw: `{"cniVersion":"1.1.0","name":"x","type":"zonenet",`, codes: []uint{6}, names: []string{"json"}},
		{name: "unknown-mode", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.Mode = "bridgy" }, codes: []uint{7}, names: []string{"mode", "bridgy"}},
		{name: "subnet-not-an-address", mutate: withZone(func(z *cnitest.Zone) { z.Subnet = "10.0.300.0/24" }), codes: []uint{7}, names: []string{"subnet", "10.0.300.0/24"}},
		{name: "subnet-without-length", mutate: withZone(func(z *cnitest.Zone) { z.Subnet = "10.77.1.0" }), codes: []uint{7}, names: []string{"subnet", "10.77.1.0"}},
		{name: "subnet6-is-ipv4", mutate: withZone(func(z *cnitest.Zone) { z.Subnet6 = other.String() }), codes: []uint{7}, names: []string{"subnet6", other.String()}},
		{name: "overlapping-subnets", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) {
			wide := netip.PrefixFrom(sn.Addr(), 16).Masked().String()
			c.Zones = append(append([]cnitest.Zone(nil), c.Zones...), cnitest.Zone{Name: "backend", Subnet: wide, Bridge: "zbover"})
		}, codes: []uint{7}, names: []string{"overlap", netip.PrefixFrom(sn.Addr(), 16).Masked().String()}},
		{name: "duplicate-zone", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) {
			c.Zones = append(append([]cnitest.Zone(nil), c.Zones...), cnitest.Zone{Name: z.Name, Subnet: other.String(), Bridge: "zbdup"})
		}, codes: []uint{7}, names: []string{z.Name}},
		{name: "no-zones", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.Zones = nil }, codes: []uint{7}, names: []string{"zones"}},
		{name: "gateway-outside-subnet", mutate: withZone(func(z *cnitest.Zone) { z.Gateway = "192.0.2.1" }), codes: []uint{7}, names: []string{"gateway", "192.0.2.1"}},
		{name: "range-outside-subnet", mutate: withZone(func(z *cnitest.Zone) { z.RangeStart = cnitest.Nth(other, 5).String() }), codes: []uint{7}, names: []string{"rangeStart", cnitest.Nth(other, 5).String()}},
		{name: "range-reversed", mutate: withZone(func(z *cnitest.Zone) {
			z.RangeStart, z.RangeEnd = cnitest.Nth(sn, 200).String(), cnitest.Nth(sn, 100).String()
		}), codes: []uint{7}, names: []string{"range", cnitest.Nth(sn, 200).String()}},
		{name: "bridge-name-too-long", mutate: withZone(func(z *cnitest.Zone) { z.Bridge = "averyveryverylongbridge" }), codes: []uint{7}, names: []string{"bridge", "averyveryverylongbridge"}},
		{name: "mtu-out-of-range", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.MTU = 70000 }, codes: []uint{7}, names: []string{"mtu", "70000"}},
		{name: "relative-data-dir", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.DataDir = "var/lib/zonenet" }, codes: []uint{7}, names: []string{"dataDir", "var/lib/zonenet"}},
		{name: "ipmasq-not-bool", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.Extra = map[string]any{"ipMasq": "yes"} }, codes: []uint{6, 7}, names: []string{"ipMasq"}},
		{name: "unsupported-cni-version", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.CNIVersion = "9.9.9" }, codes: []uint{1}, names: []string{"9.9.9"}},
		{name: "unknown-default-zone", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.DefaultZone = "nowhere" }, codes: []uint{7}, names: []string{"defaultZone", "nowhere"}},
		{name: "unknown-namespace-zone", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.NamespaceZones = map[string]string{"payments": "nowhere"} }, codes: []uint{7}, names: []string{"namespaceZones", "nowhere"}},
		{name: "unknown-zone-args-cni", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.SetArgs(cnitest.CNIArgs{Zone: "nowhere"}) }, codes: []uint{7}, names: []string{"zone", "nowhere"}},
		{name: "unknown-zone-cni-args", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Args = "ZONE=nowhere" }, codes: []uint{4}, names: []string{"ZONE", "nowhere"}},
		{name: "cni-args-not-key-value", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Args = "ZONE" }, codes: []uint{4}, names: []string{"CNI_ARGS", "ZONE"}},
		{name: "cni-args-unknown-key", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Args = "FOO=bar" }, codes: []uint{4}, names: []string{"FOO"}},
		{name: "cni-args-bad-ip", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Args = "IP=10.1.2.300" }, codes: []uint{4}, names: []string{"IP", "10.1.2.300"}},
		{name: "cni-args-bad-mac", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Args = "MAC=zz:00" }, codes: []uint{4}, names: []string{"MAC", "zz:00"}},
		{name: "runtime-bad-mac", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) { c.RuntimeConfig = &cnitest.RuntimeConfig{MAC: "zz:zz:zz"} }, codes: []uint{7}, names: []string{"mac", "zz:zz:zz"}},
		{name: "port-out-of-range", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) {
			c.RuntimeConfig = &cnitest.RuntimeConfig{PortMappings: []cnitest.PortMapping{{HostPort: 70000, ContainerPort: 80, Protocol: "tcp"}}}
		}, codes: []uint{7}, names: []string{"hostPort|portMappings", "70000"}},
		{name: "port-bad-protocol", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) {
			c.RuntimeConfig = &cnitest.RuntimeConfig{PortMappings: []cnitest.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "icmp"}}}
		}, codes: []uint{7}, names: []string{"protocol", "icmp"}},
		{name: "static-ip-outside-zone-runtime", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) {
			c.RuntimeConfig = &cnitest.RuntimeConfig{IPs: []string{"192.0.2.5/24"}}
		}, codes: []uint{7}, names: []string{"192.0.2.5"}},
		{name: "static-ip-outside-zone-cni-args", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Args = "IP=192.0.2.5" }, codes: []uint{4}, names: []string{"192.0.2.5"}},
		{name: "static-ip-is-gateway", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) {
			c.SetArgs(cnitest.CNIArgs{IPs: []string{cnitest.Nth(sn, 1).String()}})
		}, codes: []uint{7}, names: []string{cnitest.Nth(sn, 1).String()}},
		{name: "static-ip-taken-runtime", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) {
			c.RuntimeConfig = &cnitest.RuntimeConfig{IPs: []string{taken.String()}}
		}, codes: []uint{7}, names: []string{taken.String()}},
		{name: "static-ip-taken-cni-args", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Args = "IP=" + taken.String() }, codes: []uint{4, 7}, names: []string{taken.String()}},
		{name: "ifname-too-long", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.IfName = "eth0123456789abcd" }, codes: []uint{4}, names: []string{"interface name|ifname|CNI_IFNAME"}},
		{name: "ifname-with-slash", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.IfName = "eth/0" }, codes: []uint{4}, names: []string{"interface name|ifname|CNI_IFNAME"}},
		{name: "ifname-dotdot", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.IfName = ".." }, codes: []uint{4}, names: []string{"interface name|ifname|CNI_IFNAME"}},
		{name: "container-id-dotdot", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.ContainerID = ".." }, codes: []uint{4}, names: []string{"containerID|container id|CNI_CONTAINERID"}},
		{name: "container-id-traversal", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.ContainerID = "../../etc/passwd" }, codes: []uint{4}, names: []string{"containerID|container id|CNI_CONTAINERID"}},
		{name: "container-id-slash", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.ContainerID = "abc/def" }, codes: []uint{4}, names: []string{"containerID|container id|CNI_CONTAINERID"}},
		{name: "netns-is-a-file", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Netns = "/etc/hostname" }, codes: []uint{8}, names: []string{"/etc/hostname"}},
		{name: "netns-is-a-mount-ns", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Netns = "/proc/self/ns/mnt" }, codes: []uint{8}, names: []string{"/proc/self/ns/mnt"}},
		{name: "netns-missing", mutate: func(_ *cnitest.NetConf, call *cnitest.Call) { call.Netns = "/run/netns/znt-does-not-exist" }, codes: []uint{8}, names: []string{"/run/netns/znt-does-not-exist"}},
		{name: "config-of-several-mib", mutate: func(c *cnitest.NetConf, _ *cnitest.Call) {
			c.Extra = map[string]any{"padding": strings.Repeat("x", 4<<20)}
		}, codes: []uint{7}, names: []string{"byte|size|large|limit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := victim.Conf
			call := e.call("ADD", victim, conf)
			if tc.mutate != nil {
				tc.mutate(&conf, &call)
				call.Config = conf.JSON(t)
			}
			if tc.raw != "" {
				call.Config = []byte(tc.raw)
			}
			out, cerr := cnitest.Exec(t, call)
			if cerr == nil {
				t.Fatalf("ADD succeeded, want code %v:\n%.300s", tc.codes, out)
			}
			text := cerr.Msg + " " + cerr.Details
			if !cnitest.IsCode(cerr, tc.codes...) {
				t.Errorf("code %d, want %v; error: %s", cerr.Code, tc.codes, text)
			}
			for _, n := range tc.names {
				if !containsFold(text, strings.Split(n, "|")...) {
					t.Errorf("error does not name %q: %s", n, text)
				}
			}
			if d := hostBefore.Diff(e.sub(t).snapshot()); d != "" {
				t.Errorf("rejected ADD changed the host or the store:\n%s", d)
			}
			if d := ctrBefore.Diff(cnitest.Snapshot(t, victim.NS, "", "")); d != "" {
				t.Errorf("rejected ADD changed the container namespace:\n%s", d)
			}
		})
	}
	e.del(owner)
}

// containsFold reports whether s contains any of subs, ignoring case.
func containsFold(s string, subs ...string) bool {
	ls := strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(ls, strings.ToLower(sub)) {
			return true
		}
	}
	return false
}
