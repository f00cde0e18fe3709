package acl_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
	"github.com/zonenet/zonenet/conf"
)

const testPolicy = `
version: 1
defaults: {intraZone: allow, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: allow}
zones:
  - name: backend
    intraZone: deny
rules:
  - name: web-in
    source: external
    destination: {zone: frontend, ports: [80, 443]}
    protocol: tcp
  - name: web-out
    source: frontend
    destination: {external: true, ports: [80, 443]}
    protocol: tcp
  - name: api
    source: frontend
    destination: {zone: backend, ports: [8080]}
    protocol: tcp
  - name: db-from-mgmt
    source: 10.0.3.10
    destination: {zone: backend, ports: [3306]}
    protocol: tcp
  - name: gateway-dns
    source: [frontend, backend, mgmt]
    destination: {host: true, ports: [53]}
    protocol: [udp, tcp]
`

func testZones() []conf.Zone {
	z := func(name, subnet, gw string) conf.Zone {
		return conf.Zone{Name: name, Subnet: netip.MustParsePrefix(subnet), Gateway: netip.MustParseAddr(gw)}
	}
	mgmt := z("mgmt", "10.0.3.0/24", "10.0.3.1")
	mgmt.Subnet6 = netip.MustParsePrefix("fd00:0:3::/64")
	mgmt.Gateway6 = netip.MustParseAddr("fd00:0:3::1")
	return []conf.Zone{z("frontend", "10.0.1.0/24", "10.0.1.1"), z("backend", "10.0.2.0/24", "10.0.2.1"), mgmt}
}

func parsePolicy(t *testing.T, doc string) *conf.Policy {
	t.Helper()
	p, _, err := conf.ParsePolicy([]byte(doc), testZones())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func save(t *testing.T, f *acltest.Fake) string {
	t.Helper()
	var out []string
	for _, fam := range []acl.Family{acl.IPv4, acl.IPv6} {
		b, err := f.Save(fam, "filter")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "")
}

func TestApplyFilterIdempotentAndDeterministic(t *testing.T) {
	p := parsePolicy(t, testPolicy)
	f, g := &acltest.Fake{}, &acltest.Fake{}
	if err := acl.ApplyFilter(f, "prod", p); err != nil {
		t.Fatal(err)
	}
	first := save(t, f)
	for i := 0; i < 3; i++ {
		if err := acl.ApplyFilter(f, "prod", parsePolicy(t, testPolicy)); err != nil {
			t.Fatal(err)
		}
		if got := save(t, f); got != first {
			t.Fatalf("apply %d changed the table:\n%s\nwant\n%s", i+2, got, first)
		}
	}
	if f.Restores != 8 {
		t.Errorf("%d restores for 4 applies, want one per family each", f.Restores)
	}
	if err := acl.ApplyFilter(g, "prod", p); err != nil {
		t.Fatal(err)
	}
	if save(t, g) != first {
		t.Error("two fresh tables differ after the same apply")
	}
	for _, fam := range []acl.Family{acl.IPv4, acl.IPv6} {
		for _, hk := range []struct{ builtin, top string }{
			{"FORWARD", acl.ChainForward}, {"INPUT", acl.ChainInput}, {"OUTPUT", acl.ChainOutput}} {
			b, _ := f.Rules(fam, "filter", hk.builtin)
			if len(b) != 1 || !strings.HasSuffix(b[0], "-j "+hk.top) {
				t.Errorf("IPv%d %s = %q, want one jump to %s", fam, hk.builtin, b, hk.top)
			}
			top, _ := f.Rules(fam, "filter", hk.top)
			if len(top) < 2 || !strings.Contains(top[0], "--ctstate RELATED,ESTABLISHED") {
				t.Errorf("IPv%d %s = %q, want the conntrack rule first, then jumps", fam, hk.top, top)
			}
		}
		for _, c := range f.Chains(fam, "filter") {
			if len(c) > 28 {
				t.Errorf("chain %s longer than 28", c)
			}
		}
	}
	// Every rule carries its owner.
	for _, l := range strings.Split(first, "\n") {
		if strings.HasPrefix(l, "-A ") && !strings.Contains(l, `--comment "zonenet`) {
			t.Errorf("rule without owner comment: %s", l)
		}
	}
	// Spot checks of the rendering.
	for _, want := range []string{
		`-s 10.0.3.10/32 -d 10.0.2.0/24 -p tcp -m tcp --dport 3306 -m comment --comment "zonenet prod rule db-from-mgmt" -j ACCEPT`,
		`-s 10.0.2.0/24 -d 10.0.2.0/24 -m comment --comment "zonenet prod default intraZone backend" -j DROP`,
		`-s 10.0.1.0/24 -d 10.0.1.0/24 -m comment --comment "zonenet prod default intraZone frontend" -j ACCEPT`,
		`-d 10.0.1.0/24 -p tcp -m tcp --dport 443 -m comment --comment "zonenet prod rule web-in" -j ACCEPT`,
		`-s 10.0.1.0/24 -p udp -m udp --dport 53 -m comment --comment "zonenet prod rule gateway-dns" -j ACCEPT`,
		`-s fd00:0:3::/64 -m comment --comment "zonenet prod default toHost mgmt" -j DROP`,
		`-p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation -m comment --comment "zonenet prod neighbour discovery" -j ACCEPT`,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("missing %s", want)
		}
	}
}

func TestApplyFilterReplacesRules(t *testing.T) {
	f := &acltest.Fake{}
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, testPolicy)); err != nil {
		t.Fatal(err)
	}
	open := "version: 1\ndefaults: {interZone: allow, toExternal: allow, fromExternal: allow, toHost: allow}\n"
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, open)); err != nil {
		t.Fatal(err)
	}
	all := save(t, f)
	if strings.Contains(all, "rule ") || strings.Contains(all, "-j DROP") {
		t.Errorf("old rules survived the new policy:\n%s", all)
	}
	if strings.Contains(all, "ZN-FXS-") || strings.Contains(all, "ZN-FXD-") {
		t.Errorf("unused gate chains left:\n%s", all)
	}
}

func TestRemoveFilterLeavesNothing(t *testing.T) {
	f := &acltest.Fake{}
	if err := acl.RemoveFilter(f, "prod"); err != nil {
		t.Fatalf("remove of nothing: %v", err)
	}
	p := parsePolicy(t, testPolicy)
	other, _, err := conf.ParsePolicy([]byte("version: 1\n"), []conf.Zone{{Name: "a",
		Subnet: netip.MustParsePrefix("10.9.0.0/24"), Gateway: netip.MustParseAddr("10.9.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		name string
		p    *conf.Policy
	}{{"prod", p}, {"other", other}} {
		if err := acl.ApplyFilter(f, n.name, n.p); err != nil {
			t.Fatal(err)
		}
	}
	if err := acl.RemoveFilter(f, "prod"); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []acl.Family{acl.IPv4, acl.IPv6} {
		for _, c := range f.Chains(fam, "filter") {
			if strings.HasPrefix(c, "ZN-") {
				rules, _ := f.Rules(fam, "filter", c)
				for _, r := range rules {
					if strings.Contains(r, "zonenet prod") {
						t.Errorf("IPv%d: rule of prod left: %s", fam, r)
					}
				}
			}
		}
	}
	fwd, _ := f.Rules(acl.IPv4, "filter", acl.ChainForward)
	if len(fwd) != 3 { // conntrack, -s and -d of other's zone
		t.Errorf("%s after removing prod = %q", acl.ChainForward, fwd)
	}
	if c := f.Chains(acl.IPv6, "filter"); len(c) != 0 {
		t.Errorf("IPv6 chains left with no network using them: %q", c)
	}
	if err := acl.RemoveFilter(f, "other"); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []acl.Family{acl.IPv4, acl.IPv6} {
		if c := f.Chains(fam, "filter"); len(c) != 0 {
			t.Errorf("IPv%d chains left: %q", fam, c)
		}
		for _, b := range []string{"FORWARD", "INPUT", "OUTPUT"} {
			if r, _ := f.Rules(fam, "filter", b); len(r) != 0 {
				t.Errorf("IPv%d %s left: %q", fam, b, r)
			}
		}
	}
	if err := acl.RemoveFilter(f, "other"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func TestApplyFilterRepairsTopChain(t *testing.T) {
	f := &acltest.Fake{}
	p := parsePolicy(t, testPolicy)
	if err := acl.ApplyFilter(f, "prod", p); err != nil {
		t.Fatal(err)
	}
	top, _ := f.Rules(acl.IPv4, "filter", acl.ChainForward)
	if err := f.Restore(acl.IPv4, "filter", []byte("-D"+strings.TrimPrefix(top[0], "-A")+"\n")); err != nil {
		t.Fatal(err)
	}
	if err := acl.ApplyFilter(f, "prod", p); err != nil {
		t.Fatal(err)
	}
	again, _ := f.Rules(acl.IPv4, "filter", acl.ChainForward)
	if !slices.Equal(again, top) {
		t.Errorf("repaired chain = %q, want %q", again, top)
	}
}
