package conf

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"sigs.k8s.io/yaml"
)

func readPolicy(t *testing.T, path string, zones []Zone) *Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, warns, err := ParsePolicy(data, zones)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(warns) > 0 {
		t.Errorf("%s: unexpected warnings %v", path, warns)
	}
	return p
}

func referenceZones(t *testing.T) []Zone {
	t.Helper()
	c, err := Parse([]byte(reference))
	if err != nil {
		t.Fatal(err)
	}
	return c.Zones
}

type verdictCase struct {
	name     string
	flow     Flow
	allowed  bool
	decision string
}

func tcp(src, dst string, port uint16) Flow {
	return Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: ProtoTCP, SrcPort: 40000, DstPort: port}
}

func checkVerdicts(t *testing.T, p *Policy, cases []verdictCase) {
	t.Helper()
	for _, c := range cases {
		ok, by := p.Allows(c.flow)
		if ok != c.allowed || by != c.decision {
			t.Errorf("%s: Allows(%+v) = %v by %q, want %v by %q", c.name, c.flow, ok, by, c.allowed, c.decision)
		}
	}
}

// The mission's examples against the reference policy.
func TestReferencePolicyVerdicts(t *testing.T) {
	hostDNS := Flow{Src: netip.MustParseAddr("10.0.1.5"), Dst: netip.MustParseAddr("192.0.2.1"), DstHost: true, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53}
	hostSSH := Flow{Src: netip.MustParseAddr("10.0.2.5"), Dst: netip.MustParseAddr("10.0.2.1"), Proto: ProtoTCP, SrcPort: 40000, DstPort: 22}
	probe := Flow{Src: netip.MustParseAddr("10.0.2.1"), Dst: netip.MustParseAddr("10.0.2.20"), Proto: ProtoTCP, SrcPort: 40000, DstPort: 8080}
	ping := Flow{Src: netip.MustParseAddr("10.0.1.5"), Dst: netip.MustParseAddr("10.0.2.20"), Proto: ProtoICMP}
	cases := []verdictCase{
		{"mgmt 10.0.3.10 -> backend:3306", tcp("10.0.3.10", "10.0.2.20", 3306), true, "db-from-mgmt"},
		{"mgmt 10.0.3.11 -> backend:3306", tcp("10.0.3.11", "10.0.2.20", 3306), false, DecidedInterZone},
		{"frontend -> backend:3306", tcp("10.0.1.5", "10.0.2.20", 3306), false, DecidedInterZone},
		{"frontend -> backend:8080", tcp("10.0.1.5", "10.0.2.20", 8080), true, "api"},
		{"frontend -> backend icmp", ping, false, DecidedInterZone},
		{"frontend -> external:443", tcp("10.0.1.5", "93.184.216.34", 443), true, "web-out"},
		{"frontend -> external:80", tcp("10.0.1.5", "93.184.216.34", 80), true, "web-out"},
		{"frontend -> external:25", tcp("10.0.1.5", "93.184.216.34", 25), false, DecidedToExternal},
		{"external -> frontend:443", tcp("203.0.113.9", "10.0.1.5", 443), true, "web-in"},
		{"external -> frontend:22", tcp("203.0.113.9", "10.0.1.5", 22), false, DecidedFromExternal},
		{"external -> backend:3306", tcp("203.0.113.9", "10.0.2.20", 3306), false, DecidedFromExternal},
		{"external -> backend:8080", tcp("203.0.113.9", "10.0.2.20", 8080), false, DecidedFromExternal},
		{"backend -> external:443", tcp("10.0.2.20", "93.184.216.34", 443), false, DecidedToExternal},
		{"backend -> frontend:80", tcp("10.0.2.20", "10.0.1.5", 80), false, DecidedInterZone},
		{"frontend -> mgmt", tcp("10.0.1.5", "10.0.3.10", 22), false, DecidedInterZone},
		{"frontend intra-zone", tcp("10.0.1.5", "10.0.1.6", 9999), true, DecidedIntraZone},
		{"backend intra-zone", tcp("10.0.2.20", "10.0.2.21", 3306), true, DecidedIntraZone},
		{"mgmt v6 intra-zone", tcp("fd00:0:3::5", "fd00:0:3::6", 22), true, DecidedIntraZone},
		{"container -> host DNS", hostDNS, true, "gateway-dns"},
		{"container -> gateway ssh", hostSSH, false, DecidedToHost},
		{"host -> container", probe, true, DecidedFromHost},
		{"external -> external", tcp("203.0.113.9", "198.51.100.1", 80), true, DecidedUnmanaged},
	}
	// The same verdicts checked standalone and against the network's zones.
	checkVerdicts(t, readPolicy(t, "../deploy/policy-reference.yaml", nil), cases)
	checkVerdicts(t, readPolicy(t, "../deploy/policy-reference.yaml", referenceZones(t)), cases)
}

func TestExamplePolicies(t *testing.T) {
	deny := readPolicy(t, "../deploy/policies/intra-zone-deny.yaml", nil)
	checkVerdicts(t, deny, []verdictCase{
		{"frontend intra-zone denied", tcp("10.0.1.5", "10.0.1.6", 80), false, DecidedIntraZone},
		{"backend replication", tcp("10.0.2.5", "10.0.2.6", 3306), true, "db-replication"},
		{"backend intra-zone other port", tcp("10.0.2.5", "10.0.2.6", 22), false, DecidedIntraZone},
		{"mgmt keeps intra-zone", tcp("10.0.3.5", "10.0.3.6", 22), true, DecidedIntraZone},
		{"api still allowed", tcp("10.0.1.5", "10.0.2.6", 8080), true, "api"},
	})
	open := readPolicy(t, "../deploy/policies/wide-open.yaml", nil)
	checkVerdicts(t, open, []verdictCase{
		{"frontend -> backend:3306", tcp("10.0.1.5", "10.0.2.20", 3306), true, DecidedInterZone},
		{"backend -> external", tcp("10.0.2.20", "93.184.216.34", 25), true, DecidedToExternal},
		{"external -> mgmt", tcp("203.0.113.9", "10.0.3.10", 22), true, DecidedFromExternal},
	})
	if z := open.Zone("mgmt"); z.Limits.MaxConnections != 5000 || z.Limits.RateLimit.Action != RateLog {
		t.Errorf("wide-open limits: %+v", z.Limits)
	}
}

func TestReferencePolicyLimits(t *testing.T) {
	p := readPolicy(t, "../deploy/policy-reference.yaml", nil)
	fe, be := p.Zone("frontend"), p.Zone("backend")
	want := Limits{MaxConnections: 5000, Bandwidth: 100_000_000,
		RateLimit: RateLimit{NewConnectionsPerMinute: 1000, Action: RateDrop, BlockFor: DefaultBlockFor}}
	if !reflect.DeepEqual(fe.Limits, want) {
		t.Errorf("frontend limits %+v, want %+v", fe.Limits, want)
	}
	want.RateLimit = RateLimit{NewConnectionsPerMinute: 1000, Action: RateLog}
	if !reflect.DeepEqual(be.Limits, want) {
		t.Errorf("backend limits %+v, want %+v", be.Limits, want)
	}
	if len(p.Zone("mgmt").Subnets) != 2 || len(p.Zone("mgmt").Gateways) != 2 {
		t.Errorf("mgmt: %+v", p.Zone("mgmt"))
	}
}

func TestReferenceTable(t *testing.T) {
	tbl := readPolicy(t, "../deploy/policy-reference.yaml", nil).Table()
	want := map[[2]string]string{
		{"frontend", "frontend"}: "allow",
		{"frontend", "backend"}:  "tcp 8080",
		{"frontend", "external"}: "tcp 80,443",
		{"frontend", "host"}:     "udp 53; tcp 53",
		{"mgmt", "backend"}:      "tcp 3306 from 10.0.3.10",
		{"backend", "external"}:  "deny",
		{"external", "frontend"}: "tcp 80,443",
		{"external", "backend"}:  "deny",
		{"external", "host"}:     "-",
		{"host", "mgmt"}:         "allow",
	}
	if strings.Join(tbl.Labels, ",") != "frontend,backend,mgmt,external,host" {
		t.Fatalf("labels %v", tbl.Labels)
	}
	idx := map[string]int{}
	for i, l := range tbl.Labels {
		idx[l] = i
	}
	for k, w := range want {
		if got := tbl.Cells[idx[k[0]]][idx[k[1]]].String(); got != w {
			t.Errorf("cell %s -> %s = %q, want %q", k[0], k[1], got, w)
		}
	}
}

func TestPolicyYAMLAndJSONAgree(t *testing.T) {
	y, err := os.ReadFile("../deploy/policy-reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	py, _, err := ParsePolicy(y, nil)
	if err != nil {
		t.Fatal(err)
	}
	pj, _, err := ParsePolicy(j, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(py, pj) {
		t.Errorf("YAML and JSON forms differ:\n%+v\n%+v", py, pj)
	}
	// Short and long forms of the same rule, written by hand.
	short := `{"zones":[{"name":"a","subnet":"10.1.0.0/24"}],
	  "rules":[{"name":"r","source":"10.1.0.9","destination":{"external":true,"ports":"443"},"protocol":"TCP"}]}`
	long := "zones:\n- {name: a, subnet: 10.1.0.0/24}\nrules:\n- name: r\n  source: [{address: 10.1.0.9}]\n" +
		"  destination: {external: true, ports: [443]}\n  protocol: [tcp]\n"
	ps, _, err1 := ParsePolicy([]byte(short), nil)
	pl, _, err2 := ParsePolicy([]byte(long), nil)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if !reflect.DeepEqual(ps, pl) {
		t.Errorf("short and long forms differ:\n%+v\n%+v", ps, pl)
	}
}

func TestBrokenPolicyReportsEveryError(t *testing.T) {
	data, err := os.ReadFile("testdata/policy/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ParsePolicy(data, nil)
	var pe PolicyErrors
	if !errors.As(err, &pe) {
		t.Fatalf("error %T %v, want PolicyErrors", err, err)
	}
	want := []string{
		`zones[1] (backend).limits.rateLimit.action "block"`,
		`rules[0] (api).source "frontnd": is not a zone`,
		`rules[1] (db-from-mgmt).destination.ports[0] "70000"`,
		`rules[2] (range).destination.ports[0] "9000-8000"`,
		`rules[3] (hostbits).source "10.0.1.7/24": has host bits set`,
		`rules[4] (ping).destination.ports: are set but protocol icmp`,
		`rules[5].name "api": is also the name of rules[0]`,
		`rules[5] (api): can never match`,
	}
	if len(pe) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(pe), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("errors lack %q:\n%v", w, err)
		}
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != types.ErrInvalidNetworkConfig {
		t.Errorf("first error not a config *Error: %#v", ce)
	}
}

// The table and Allows must tell the same story, cell by cell: a probe is
// allowed iff its cell's default allows or one of the cell's entries
// matches it.
func TestTableAgreesWithAllows(t *testing.T) {
	type probe struct {
		addr netip.Addr
		host bool
	}
	probes := []probe{{addr: netip.MustParseAddr("192.0.2.7"), host: true}, {addr: netip.MustParseAddr("203.0.113.9")},
		{addr: netip.MustParseAddr("10.0.3.10")}, {addr: netip.MustParseAddr("10.0.2.1")}}
	for _, path := range []string{"../deploy/policy-reference.yaml", "../deploy/policies/intra-zone-deny.yaml", "../deploy/policies/wide-open.yaml"} {
		p := readPolicy(t, path, nil)
		tbl := p.Table()
		row := map[string]int{}
		for i, l := range tbl.Labels {
			row[l] = i
		}
		ps := probes
		for _, z := range p.Zones {
			for _, s := range z.Subnets {
				ps = append(ps, probe{addr: s.Addr().Next().Next().Next()})
			}
		}
		for _, s := range ps {
			for _, d := range ps {
				for _, proto := range []Protocol{ProtoTCP, ProtoUDP, ProtoICMP} {
					for _, port := range []uint16{22, 53, 80, 443, 3306, 8080} {
						f := Flow{Src: s.addr, Dst: d.addr, SrcHost: s.host, DstHost: d.host, Proto: proto, SrcPort: 40000, DstPort: port}
						got, by := p.Allows(f)
						cell := tbl.Cells[row[p.classify(s.addr, s.host).String()]][row[p.classify(d.addr, d.host).String()]]
						want := !cell.Managed || cell.Default == Allow
						for _, a := range cell.Allows {
							if (a.Protocol == ProtoAll || a.Protocol == proto) && inNarrowing(a.Source, s.addr) &&
								inNarrowing(a.Destination, d.addr) && inPorts(a.DstPorts, proto, port) && inPorts(a.SourcePorts, proto, 40000) {
								want = true
							}
						}
						if got != want {
							t.Errorf("%s: %+v: Allows %v (%s), table cell %q says %v", path, f, got, by, cell, want)
						}
					}
				}
			}
		}
	}
}

func inNarrowing(sel string, a netip.Addr) bool {
	if sel == "" {
		return true
	}
	if p, err := netip.ParsePrefix(sel); err == nil {
		return p.Contains(a)
	}
	return netip.MustParseAddr(sel) == a
}

func inPorts(rs []PortRange, proto Protocol, port uint16) bool {
	if len(rs) == 0 {
		return true
	}
	if !proto.HasPorts() {
		return false
	}
	for _, r := range rs {
		if r.Contains(port) {
			return true
		}
	}
	return false
}
