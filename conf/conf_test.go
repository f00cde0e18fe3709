package conf

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

const reference = `{
  "cniVersion": "1.1.0", "name": "prod", "type": "zonenet", "mode": "bridge",
  "dataDir": "/var/lib/zonenet", "mtu": 1450, "ipMasq": true,
  "defaultZone": "frontend", "namespaceZones": {"payments": "backend"},
  "zones": [
    {"name": "frontend", "subnet": "10.0.1.0/24"},
    {"name": "backend", "subnet": "10.0.2.0/24", "rangeStart": "10.0.2.10", "rangeEnd": "10.0.2.200", "exclude": ["10.0.2.50"]},
    {"name": "mgmt", "subnet": "10.0.3.0/24", "subnet6": "fd00:0:3::/64"}
  ],
  "capabilities": {"portMappings": true, "ips": true, "mac": true, "bandwidth": true}
}`

func TestParseReference(t *testing.T) {
	c, err := Parse([]byte(reference))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeBridge || c.MTU != 1450 || !c.IPMasq || len(c.Zones) != 3 {
		t.Fatalf("unexpected top level: %+v", c)
	}
	fe := c.Zone("frontend")
	if fe.Gateway != netip.MustParseAddr("10.0.1.1") || fe.RangeStart != netip.MustParseAddr("10.0.1.1") ||
		fe.RangeEnd != netip.MustParseAddr("10.0.1.254") {
		t.Errorf("frontend defaults: gw %s range %s-%s", fe.Gateway, fe.RangeStart, fe.RangeEnd)
	}
	be := c.Zone("backend")
	if be.RangeStart != netip.MustParseAddr("10.0.2.10") || be.RangeEnd != netip.MustParseAddr("10.0.2.200") ||
		len(be.Exclude) != 1 {
		t.Errorf("backend range: %s-%s %v", be.RangeStart, be.RangeEnd, be.Exclude)
	}
	mg := c.Zone("mgmt")
	if mg.Gateway6 != netip.MustParseAddr("fd00:0:3::1") || mg.RangeEnd6 != netip.MustParseAddr("fd00:0:3::ffff:ffff:ffff:ffff") {
		t.Errorf("mgmt v6: gw %s end %s", mg.Gateway6, mg.RangeEnd6)
	}
	for _, z := range c.Zones {
		if len(z.Bridge) == 0 || len(z.Bridge) > 15 {
			t.Errorf("zone %s bridge %q", z.Name, z.Bridge)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"name":"n","zones":[{"name":"a","subnet":"10.9.0.0/16"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeBridge || c.DataDir != DefaultDataDir || !c.IPMasq || c.MTU != 0 {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := Parse([]byte(`{"name":"n","mode":"none"}`)); err != nil {
		t.Errorf("mode none without zones: %v", err)
	}
}

func TestBridgeNameDistinct(t *testing.T) {
	a, b := BridgeName("prod", "frontend"), BridgeName("staging", "frontend")
	if a == b || len(a) > 15 || len(b) > 15 {
		t.Fatalf("BridgeName: %q %q", a, b)
	}
	if BridgeName("prod", "frontend") != a {
		t.Fatal("BridgeName is not stable")
	}
}

func TestParseErrors(t *testing.T) {
	zone := func(s string) string { return `{"name":"n","zones":[` + s + `]}` }
	cases := []struct {
		name, conf string
		code       uint
		want       []string // substrings of the message
	}{
		{"invalid json", `{"name":`, types.ErrDecodingFailure, []string{"invalid JSON"}},
		{"trailing data", `{"name":"n","mode":"none"} {}`, types.ErrDecodingFailure, []string{"after the top-level"}},
		{"wrong type", `{"name":"n","mtu":"big"}`, types.ErrDecodingFailure, []string{"mtu"}},
		{"unknown mode", `{"name":"n","mode":"macvlan"}`, types.ErrInvalidNetworkConfig, []string{"mode", "macvlan"}},
		{"relative dataDir", `{"name":"n","mode":"none","dataDir":"var/x"}`, types.ErrInvalidNetworkConfig, []string{"dataDir", "var/x"}},
		{"bad mtu", `{"name":"n","mode":"none","mtu":10}`, types.ErrInvalidNetworkConfig, []string{"mtu", "10"}},
		{"no zones", `{"name":"n"}`, types.ErrInvalidNetworkConfig, []string{"zones"}},
		{"bad zone name", zone(`{"name":"Front End","subnet":"10.0.1.0/24"}`), types.ErrInvalidNetworkConfig, []string{"zones[0].name", "Front End"}},
		{"bad subnet", zone(`{"name":"a","subnet":"10.0.1.0/33"}`), types.ErrInvalidNetworkConfig, []string{"subnet", "10.0.1.0/33"}},
		{"host bits", zone(`{"name":"a","subnet":"10.0.1.5/24"}`), types.ErrInvalidNetworkConfig, []string{"host bits", "10.0.1.0/24"}},
		{"v6 in subnet", zone(`{"name":"a","subnet":"fd00::/64"}`), types.ErrInvalidNetworkConfig, []string{"subnet", "IPv4"}},
		{"v4 in subnet6", zone(`{"name":"a","subnet6":"10.0.0.0/8"}`), types.ErrInvalidNetworkConfig, []string{"subnet6", "IPv6"}},
		{"too small", zone(`{"name":"a","subnet":"10.0.1.0/31"}`), types.ErrInvalidNetworkConfig, []string{"too small"}},
		{"no subnet", zone(`{"name":"a"}`), types.ErrInvalidNetworkConfig, []string{"subnet", "required"}},
		{"overlap", zone(`{"name":"a","subnet":"10.0.0.0/16"},{"name":"b","subnet":"10.0.1.0/24"}`), types.ErrInvalidNetworkConfig, []string{"overlaps", "zone a"}},
		{"dup zone", zone(`{"name":"a","subnet":"10.0.0.0/24"},{"name":"a","subnet":"10.0.1.0/24"}`), types.ErrInvalidNetworkConfig, []string{"used by two zones"}},
		{"dup bridge", zone(`{"name":"a","subnet":"10.0.0.0/24","bridge":"br0"},{"name":"b","subnet":"10.0.1.0/24","bridge":"br0"}`), types.ErrInvalidNetworkConfig, []string{"br0", "bridge of zone a"}},
		{"gateway outside", zone(`{"name":"a","subnet":"10.0.1.0/24","gateway":"10.0.2.1"}`), types.ErrInvalidNetworkConfig, []string{"gateway", "10.0.2.1", "outside"}},
		{"gateway broadcast", zone(`{"name":"a","subnet":"10.0.1.0/24","gateway":"10.0.1.255"}`), types.ErrInvalidNetworkConfig, []string{"broadcast"}},
		{"range outside", zone(`{"name":"a","subnet":"10.0.1.0/24","rangeStart":"10.0.9.1"}`), types.ErrInvalidNetworkConfig, []string{"rangeStart", "10.0.9.1", "outside"}},
		{"range reversed", zone(`{"name":"a","subnet":"10.0.1.0/24","rangeStart":"10.0.1.200","rangeEnd":"10.0.1.100"}`), types.ErrInvalidNetworkConfig, []string{"after rangeEnd"}},
		{"exclude outside", zone(`{"name":"a","subnet":"10.0.1.0/24","exclude":["10.0.2.2"]}`), types.ErrInvalidNetworkConfig, []string{"exclude[0]", "10.0.2.2"}},
		{"bridge too long", zone(`{"name":"a","subnet":"10.0.1.0/24","bridge":"abcdefghijklmnop"}`), types.ErrInvalidNetworkConfig, []string{"bridge", "abcdefghijklmnop"}},
		{"bridge slash", zone(`{"name":"a","subnet":"10.0.1.0/24","bridge":"a/b"}`), types.ErrInvalidNetworkConfig, []string{"bridge", "a/b"}},
		{"unknown default zone", `{"name":"n","defaultZone":"x","zones":[{"name":"a","subnet":"10.0.1.0/24"}]}`, types.ErrInvalidNetworkConfig, []string{"defaultZone", `"x"`}},
		{"unknown ns zone", `{"name":"n","namespaceZones":{"p":"x"},"zones":[{"name":"a","subnet":"10.0.1.0/24"}]}`, types.ErrInvalidNetworkConfig, []string{"namespaceZones.p", `"x"`}},
		{"unknown args zone", `{"name":"n","args":{"cni":{"zone":"x"}},"zones":[{"name":"a","subnet":"10.0.1.0/24"}]}`, types.ErrInvalidNetworkConfig, []string{"args.cni.zone", `"x"`}},
		{"bad port", `{"name":"n","mode":"none","runtimeConfig":{"portMappings":[{"hostPort":70000,"containerPort":80}]}}`, types.ErrInvalidNetworkConfig, []string{"hostPort", "70000"}},
		{"bad proto", `{"name":"n","mode":"none","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}}`, types.ErrInvalidNetworkConfig, []string{"protocol", "icmp"}},
		{"bad static ip", `{"name":"n","mode":"none","runtimeConfig":{"ips":["10.0.1.x"]}}`, types.ErrInvalidNetworkConfig, []string{"runtimeConfig.ips[0]", "10.0.1.x"}},
		{"bad mac", `{"name":"n","mode":"none","runtimeConfig":{"mac":"zz"}}`, types.ErrInvalidNetworkConfig, []string{"runtimeConfig.mac", "zz"}},
		{"multicast mac", `{"name":"n","mode":"none","args":{"cni":{"mac":"01:00:5e:00:00:01"}}}`, types.ErrInvalidNetworkConfig, []string{"multicast"}},
		{"ipam path", `{"name":"n","ipam":{"type":"../x"},"zones":[{"name":"a","subnet":"10.0.1.0/24"}]}`, types.ErrInvalidNetworkConfig, []string{"ipam.type"}},
		{"huge", `{"name":"n","x":"` + strings.Repeat("a", 3<<20) + `"}`, types.ErrInvalidNetworkConfig, []string{"byte limit"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.conf))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse = %v, want *Error", err)
			}
			if ce.Code != tc.code {
				t.Errorf("code %d, want %d (%v)", ce.Code, tc.code, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestSelectZone(t *testing.T) {
	c, err := Parse([]byte(reference))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args string
		want string
	}{
		{"", "frontend"},
		{"ZONE=mgmt", "mgmt"},
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=payments", "backend"},
		{"K8S_POD_NAMESPACE=other", "frontend"},
		{"ZONE=mgmt;K8S_POD_NAMESPACE=payments", "mgmt"},
	}
	for _, tc := range cases {
		a, err := ParseArgs(tc.args)
		if err != nil {
			t.Fatalf("ParseArgs(%q): %v", tc.args, err)
		}
		z, err := c.SelectZone(a)
		if err != nil || z.Name != tc.want {
			t.Errorf("SelectZone(%q) = %v, %v; want %s", tc.args, z, err, tc.want)
		}
	}
	// args.cni.zone wins over CNI_ARGS.
	c2, err := Parse([]byte(strings.Replace(reference, `"mode": "bridge"`, `"mode": "bridge", "args": {"cni": {"zone": "backend"}}`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if z, _ := c2.SelectZone(Args{Zone: "mgmt"}); z.Name != "backend" {
		t.Errorf("args.cni.zone did not win: %s", z.Name)
	}
	_, err = c.SelectZone(Args{Zone: "nope"})
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != types.ErrInvalidEnvironmentVariables || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown CNI_ARGS zone: %v", err)
	}
}

func TestParseArgs(t *testing.T) {
	a, err := ParseArgs("IP=10.0.1.7,fd00::7;MAC=aa:bb:cc:00:00:01;ZONE=backend")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.IPs) != 2 || a.MAC.String() != "aa:bb:cc:00:00:01" || a.Zone != "backend" {
		t.Errorf("ParseArgs: %+v", a)
	}
	for _, bad := range []string{"FOO=1", "novalue", "=x", "IP=10.0.1", "MAC=1:2"} {
		_, err := ParseArgs(bad)
		var ce *Error
		if !errors.As(err, &ce) || ce.Code != types.ErrInvalidEnvironmentVariables {
			t.Errorf("ParseArgs(%q) = %v, want code 4", bad, err)
		}
	}
	if _, err := ParseArgs("FOO=1;IgnoreUnknown=1"); err != nil {
		t.Errorf("IgnoreUnknown: %v", err)
	}
}
