package conf

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"testing"
)

// FuzzParsePolicy: any document either parses into a policy whose
// invariants hold, or fails with PolicyErrors of typed *Error. It never
// panics, and parsing is deterministic.
func FuzzParsePolicy(f *testing.F) {
	for _, path := range []string{"../deploy/policy-reference.yaml", "../deploy/policies/intra-zone-deny.yaml",
		"../deploy/policies/wide-open.yaml", "testdata/policy/broken.yaml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte(`{"rules":[{"name":"r","source":"10.0.1.0/25","destination":{"external":true,"ports":["1-65535"]},"protocol":["udp","sctp"]}]}`), true)
	f.Add([]byte("zones: [{name: v6, subnet6: 'fd00::/64'}]\nrules: [{name: p, source: v6, destination: host, protocol: icmp}]\n"), false)
	zones := []Zone{
		{Name: "frontend", Subnet: netip.MustParsePrefix("10.0.1.0/24"), Gateway: netip.MustParseAddr("10.0.1.1")},
		{Name: "backend", Subnet: netip.MustParsePrefix("10.0.2.0/24"), Gateway: netip.MustParseAddr("10.0.2.1")},
		{Name: "mgmt", Subnet: netip.MustParsePrefix("10.0.3.0/24"), Gateway: netip.MustParseAddr("10.0.3.1"),
			Subnet6: netip.MustParsePrefix("fd00:0:3::/64"), Gateway6: netip.MustParseAddr("fd00:0:3::1")},
	}
	probes := []netip.Addr{netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("10.0.2.1"),
		netip.MustParseAddr("10.0.3.10"), netip.MustParseAddr("fd00::5"), netip.MustParseAddr("203.0.113.1")}
	f.Fuzz(func(t *testing.T, data []byte, withZones bool) {
		var z []Zone
		if withZones {
			z = zones
		}
		p, _, err := ParsePolicy(data, z)
		if err != nil {
			var pe PolicyErrors
			if !errors.As(err, &pe) || len(pe) == 0 {
				t.Fatalf("error %T %v, want non-empty PolicyErrors", err, err)
			}
			for _, e := range pe {
				if e == nil || e.Key == "" {
					t.Fatalf("bad error %#v", e)
				}
			}
			return
		}
		again, _, err := ParsePolicy(data, z)
		if err != nil || !reflect.DeepEqual(p, again) {
			t.Fatalf("not deterministic: %v", err)
		}
		names := map[string]bool{}
		for _, r := range p.Rules {
			if !validRuleName(r.Name) || names[r.Name] || len(r.Sources) == 0 || len(r.Destinations) == 0 || len(r.Protocols) == 0 {
				t.Fatalf("rule invariants: %+v", r)
			}
			names[r.Name] = true
		}
		tbl := p.Table()
		if len(tbl.Labels) != len(p.Zones)+2 || len(tbl.Cells) != len(tbl.Labels) {
			t.Fatalf("table shape: %d labels, %d rows, %d zones", len(tbl.Labels), len(tbl.Cells), len(p.Zones))
		}
		for _, src := range probes {
			for _, dst := range probes {
				for _, proto := range []Protocol{ProtoTCP, ProtoICMP} {
					ok, by := p.Allows(Flow{Src: src, Dst: dst, Proto: proto, SrcPort: 1, DstPort: 443})
					if by == "" || (by == DecidedUnmanaged && !ok) {
						t.Fatalf("Allows %s -> %s: %v %q", src, dst, ok, by)
					}
				}
			}
		}
	})
}
