package conf

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// policyDoc is a standalone policy with the reference zones and the given
// rules (YAML, indented as list items of rules).
func policyDoc(rules string) string {
	return "zones:\n" +
		"  - {name: frontend, subnet: 10.0.1.0/24}\n" +
		"  - {name: backend, subnet: 10.0.2.0/24}\n" +
		"  - {name: mgmt, subnet: 10.0.3.0/24, subnet6: 'fd00:0:3::/64'}\n" +
		"rules:\n" + rules
}

func TestPolicyValidationErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		key, msg  string // the error's key (exact) and part of its message
		code      uint
	}{
		{"unknown zone", policyDoc("  - {name: r, source: frontnd, destination: backend, protocol: tcp}\n"),
			"rules[0] (r).source", "is not a zone (zones: frontend, backend, mgmt)", 0},
		{"unknown zone, object form", policyDoc("  - {name: r, source: frontend, destination: {zone: db, ports: [1]}, protocol: tcp}\n"),
			"rules[0] (r).destination.zone", "is not a zone", 0},
		{"port out of range", policyDoc("  - {name: db-from-mgmt, source: mgmt, destination: {zone: backend, ports: [3306, 65536]}, protocol: tcp}\n"),
			"rules[0] (db-from-mgmt).destination.ports[1]", "out of range 1-65535", 0},
		{"port zero", policyDoc("  - {name: r, source: mgmt, destination: {zone: backend, ports: 0}, protocol: tcp}\n"),
			"rules[0] (r).destination.ports", "out of range", 0},
		{"not a port", policyDoc("  - {name: r, source: mgmt, destination: {zone: backend, ports: [http]}, protocol: tcp}\n"),
			"rules[0] (r).destination.ports[0]", "is not a port", 0},
		{"bad port range", policyDoc("  - {name: r, source: mgmt, destination: {zone: backend, ports: [\"9000-8000\"]}, protocol: tcp}\n"),
			"rules[0] (r).destination.ports[0]", "9000 is after 8000", 0},
		{"source port out of range", policyDoc("  - {name: r, source: {zone: mgmt, ports: [\"1-99999\"]}, destination: backend, protocol: udp}\n"),
			"rules[0] (r).source.ports[0]", "99999 is out of range", 0},
		{"cidr with host bits", policyDoc("  - {name: r, source: 10.0.3.7/28, destination: backend, protocol: tcp}\n"),
			"rules[0] (r).source", "has host bits set; did you mean 10.0.3.0/28?", 0},
		{"cidr with host bits, object form", policyDoc("  - {name: r, source: {cidr: 10.0.3.7/28}, destination: backend, protocol: tcp}\n"),
			"rules[0] (r).source.cidr", "has host bits set", 0},
		{"bad address", policyDoc("  - {name: r, source: {address: 10.0.3.300}, destination: backend, protocol: tcp}\n"),
			"rules[0] (r).source.address", "is not an IP address", 0},
		{"both sides outside the zones", policyDoc("  - {name: r, source: 192.0.2.0/24, destination: external, protocol: tcp}\n"),
			"rules[0] (r)", "can never match: neither source 192.0.2.0/24 nor destination external is in a zone", 0},
		{"host to external", policyDoc("  - {name: r, source: host, destination: external, protocol: all}\n"),
			"rules[0] (r)", "can never match", 0},
		{"address families", policyDoc("  - {name: r, source: 'fd00:0:3::9', destination: backend, protocol: tcp}\n"),
			"rules[0] (r)", "no address family in common", 0},
		{"gateway address", policyDoc("  - {name: r, source: frontend, destination: {address: 10.0.2.1, ports: [53]}, protocol: udp}\n"),
			"rules[0] (r).destination.address", "is the gateway of zone backend, which is the host", 0},
		{"broadcast address", policyDoc("  - {name: r, source: 10.0.3.255, destination: backend, protocol: tcp}\n"),
			"rules[0] (r).source", "broadcast address of zone mgmt", 0},
		{"tcp ports with icmp", policyDoc("  - {name: ping, source: mgmt, destination: {zone: backend, ports: [80]}, protocol: icmp}\n"),
			"rules[0] (ping).destination.ports", "protocol icmp has no ports", 0},
		{"ports with all", policyDoc("  - {name: r, source: {zone: mgmt, ports: [80]}, destination: backend, protocol: all}\n"),
			"rules[0] (r).source.ports", "protocol all has no ports", 0},
		{"ports with tcp and icmp", policyDoc("  - {name: r, source: mgmt, destination: {zone: backend, ports: [80]}, protocol: [tcp, icmp]}\n"),
			"rules[0] (r).destination.ports", "protocol icmp has no ports", 0},
		{"unknown protocol", policyDoc("  - {name: r, source: mgmt, destination: backend, protocol: [tcp, gre]}\n"),
			"rules[0] (r).protocol[1]", "must be tcp, udp, sctp, icmp or all", 0},
		{"all with others", policyDoc("  - {name: r, source: mgmt, destination: backend, protocol: [tcp, all]}\n"),
			"rules[0] (r).protocol[1]", "list it alone", 0},
		{"missing protocol", policyDoc("  - {name: r, source: mgmt, destination: backend}\n"),
			"rules[0] (r).protocol", "is required", 0},
		{"missing destination", policyDoc("  - {name: r, source: mgmt, protocol: tcp}\n"),
			"rules[0] (r).destination", "is required", 0},
		{"two selectors", policyDoc("  - {name: r, source: {zone: mgmt, host: true}, destination: backend, protocol: tcp}\n"),
			"rules[0] (r).source", "needs exactly one of", 0},
		{"duplicate rule names", policyDoc("  - {name: r, source: mgmt, destination: backend, protocol: tcp}\n  - {name: r, source: mgmt, destination: frontend, protocol: tcp}\n"),
			"rules[1].name", "is also the name of rules[0]", 0},
		{"missing name", policyDoc("  - {source: mgmt, destination: backend, protocol: tcp}\n"),
			"rules[0].name", "is required", 0},
		{"bad name", policyDoc("  - {name: 'a b', source: mgmt, destination: backend, protocol: tcp}\n"),
			"rules[0].name", "must be 1-63 letters", 0},
		{"unknown rule key", policyDoc("  - {name: web, sorce: mgmt, destination: backend, protocol: tcp}\n"),
			"rules[0] (web)", `unknown field "sorce"`, types.ErrInvalidNetworkConfig},
		{"unknown endpoint key", policyDoc("  - {name: web, source: {zone: mgmt, port: [1]}, destination: backend, protocol: tcp}\n"),
			"rules[0] (web)", `unknown field "port"`, 0},
		{"unknown top-level key", "rulez: []\n", "policy", `unknown field "rulez"`, types.ErrDecodingFailure},
		{"bad YAML", "rules: [\n", "policy", "invalid YAML", types.ErrDecodingFailure},
		{"duplicate YAML key", "rules: []\nrules: []\n", "policy", "invalid YAML", types.ErrDecodingFailure},
		{"empty document", "# nothing\n", "policy", "is empty", types.ErrDecodingFailure},
		{"wrong type", `{"zones": "frontend"}`, "policy", "must be a list", types.ErrDecodingFailure},
		{"version", "version: 2\n", "version", "is not supported", 0},
		{"bad default", "defaults: {interZone: permit}\n", "defaults.interZone", "must be allow or deny", 0},
		{"bad intraZone", "zones:\n  - {name: a, subnet: 10.0.0.0/24, intraZone: maybe}\n", "zones[0] (a).intraZone", "must be allow or deny", 0},
		{"zone without subnet", "zones:\n  - {name: a}\n", "zones[0] (a).subnet", "is required when the policy is checked without", 0},
		{"zone subnet host bits", "zones:\n  - {name: a, subnet: 10.0.0.1/24}\n", "zones[0] (a).subnet", "has host bits set", 0},
		{"overlapping zones", "zones:\n  - {name: a, subnet: 10.0.0.0/16}\n  - {name: b, subnet: 10.0.1.0/24}\n", "zones[1] (b).subnet", "overlaps 10.0.0.0/16 of zone a", 0},
		{"reserved zone name", "zones:\n  - {name: external, subnet: 10.0.0.0/24}\n", "zones[0].name", "not external or host", 0},
		{"duplicate zone", "zones:\n  - {name: a, subnet: 10.0.0.0/24}\n  - {name: a, subnet: 10.1.0.0/24}\n", "zones[1].name", "is also zones[0]", 0},
		{"maxConnections", "defaults: {limits: {maxConnections: -1}}\n", "defaults.limits.maxConnections", "must be between 1 and", 0},
		{"bandwidth unit", "defaults: {limits: {bandwidth: 100}}\n", "defaults.limits.bandwidth", "needs a unit", 0},
		{"bandwidth bytes", "defaults: {limits: {bandwidth: 10MBps}}\n", "defaults.limits.bandwidth", "unit in bits", 0},
		{"bandwidth tiny", "defaults: {limits: {bandwidth: 10bit}}\n", "defaults.limits.bandwidth", "between 1kbit and 1Tbit", 0},
		{"rate action", "defaults: {limits: {rateLimit: {newConnectionsPerMinute: 1000, action: block}}}\n", "defaults.limits.rateLimit.action", "must be log or drop", 0},
		{"blockFor", "defaults: {limits: {rateLimit: {newConnectionsPerMinute: 1000, action: drop, blockFor: forever}}}\n", "defaults.limits.rateLimit.blockFor", "must be a duration", 0},
		{"rate negative", "defaults: {limits: {rateLimit: {newConnectionsPerMinute: -5}}}\n", "defaults.limits.rateLimit.newConnectionsPerMinute", "must be between", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParsePolicy([]byte(c.doc), nil)
			var pe PolicyErrors
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v, want PolicyErrors", err, err)
			}
			want := c.code
			if want == 0 {
				want = types.ErrInvalidNetworkConfig
			}
			for _, e := range pe {
				if e.Key == c.key && strings.Contains(e.Msg, c.msg) {
					if e.Code != want {
						t.Errorf("code %d, want %d", e.Code, want)
					}
					return
				}
			}
			t.Errorf("no error with key %q and message %q in:\n%v", c.key, c.msg, err)
		})
	}
}

func TestPolicyAgainstNetworkZones(t *testing.T) {
	zones := referenceZones(t)
	cases := []struct{ doc, key, msg string }{
		{"zones:\n  - {name: frontend, subnet: 10.0.9.0/24}\n", "zones[0] (frontend).subnet", "does not match the network's zone frontend (10.0.1.0/24)"},
		{"zones:\n  - {name: payments}\n", "zones[0] (payments).name", "is not a zone of the network (zones: frontend, backend, mgmt)"},
		{"rules:\n  - {name: r, source: payments, destination: backend, protocol: tcp}\n", "rules[0] (r).source", "is not a zone"},
	}
	for _, c := range cases {
		_, _, err := ParsePolicy([]byte(c.doc), zones)
		if err == nil || !strings.Contains(err.Error(), c.key+` `) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: error %v, want key %q and %q", c.doc, err, c.key, c.msg)
		}
	}
	// Zones the policy does not mention get the defaults; no subnet needed.
	p, _, err := ParsePolicy([]byte("defaults: {intraZone: deny}\nzones:\n  - {name: mgmt, intraZone: allow}\n"), zones)
	if err != nil {
		t.Fatal(err)
	}
	if p.Zone("frontend").IntraZone != Deny || p.Zone("mgmt").IntraZone != Allow || len(p.Zones) != 3 {
		t.Errorf("zones: %+v", p.Zones)
	}
	// A network zone whose name is a policy keyword cannot carry a policy.
	if _, _, err := ParsePolicy([]byte("rules: []\n"), []Zone{{Name: "host"}}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("zone named host: %v", err)
	}
}

func TestPolicyWarnings(t *testing.T) {
	cases := []struct{ name, doc, key, msg string }{
		{"covered by a broader rule", policyDoc(
			"  - {name: wide, source: mgmt, destination: {zone: backend, ports: [\"3000-4000\"]}, protocol: tcp}\n" +
				"  - {name: narrow, source: 10.0.3.10, destination: {zone: backend, ports: [3306]}, protocol: tcp}\n"),
			"rules[1] (narrow)", "rule wide already allows"},
		{"equal rules: the later is reported", policyDoc(
			"  - {name: one, source: mgmt, destination: backend, protocol: all}\n" +
				"  - {name: two, source: mgmt, destination: backend, protocol: all}\n"),
			"rules[1] (two)", "rule one already allows"},
		{"all covers tcp", policyDoc(
			"  - {name: tcp-only, source: mgmt, destination: {zone: backend, ports: [22]}, protocol: tcp}\n" +
				"  - {name: any, source: mgmt, destination: backend, protocol: all}\n"),
			"rules[0] (tcp-only)", "rule any already allows"},
		{"intra-zone rule with intra-zone allow", policyDoc("  - {name: self, source: frontend, destination: {zone: frontend, ports: [80]}, protocol: tcp}\n"),
			"rules[0] (self)", "the default intraZone already allows"},
		{"cidr spanning zones", policyDoc("  - {name: vpc, source: 10.0.0.0/16, destination: {external: true, ports: [443]}, protocol: tcp}\n"),
			"rules[0] (vpc)", "spans frontend, backend, mgmt and external"},
		{"cidr equal to a zone", policyDoc("  - {name: r, source: 10.0.3.0/24, destination: backend, protocol: tcp}\n"),
			"rules[0] (r)", "is the subnet of zone mgmt"},
		{"overlapping ports", policyDoc("  - {name: r, source: mgmt, destination: {zone: backend, ports: [\"1-1024\", 80]}, protocol: tcp}\n"),
			"rules[0] (r).destination.ports[1]", "overlaps port(s) 1-1024"},
		{"blockFor with log", "defaults: {limits: {rateLimit: {newConnectionsPerMinute: 10, action: log, blockFor: 1m}}}\n",
			"defaults.limits.rateLimit.blockFor", "is ignored with action log"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, warns, err := ParsePolicy([]byte(c.doc), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range warns {
				if w.Key == c.key && strings.Contains(w.Msg, c.msg) {
					return
				}
			}
			t.Errorf("no warning %q %q in %v", c.key, c.msg, warns)
		})
	}
	// A narrower rule next to a disjoint one is not redundant.
	_, warns, err := ParsePolicy([]byte(policyDoc(
		"  - {name: a, source: mgmt, destination: {zone: backend, ports: [22]}, protocol: tcp}\n"+
			"  - {name: b, source: mgmt, destination: {zone: backend, ports: [22]}, protocol: udp}\n")), nil)
	if err != nil || len(warns) != 0 {
		t.Errorf("disjoint rules: %v %v", err, warns)
	}
}
