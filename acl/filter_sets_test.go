package acl_test

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
)

// listPolicy has address lists of every shape the renderer merges: 200
// single-address rules to one port, CIDR lists of both families in one
// rule, a destination list, a destination list behind the external gate,
// and a list one short of the threshold.
func listPolicy() string {
	var b strings.Builder
	b.WriteString("version: 1\ndefaults: {intraZone: allow, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: allow}\nrules:\n")
	rule := func(name, src, dst, proto string) {
		fmt.Fprintf(&b, "  - name: %s\n    source: %s\n    destination: %s\n    protocol: %s\n", name, src, dst, proto)
	}
	for i := range 200 {
		src := fmt.Sprintf("203.0.113.%d", i+1)
		if i >= 100 {
			src = fmt.Sprintf("198.51.100.%d", i-99)
		}
		if i == 150 {
			src = "10.0.3.10" // a zone's address in the list
		}
		rule(fmt.Sprintf("db-%03d", i), src, "{zone: backend, ports: [5432]}", "tcp")
	}
	for i := range 12 {
		rule(fmt.Sprintf("dns-%02d", i), fmt.Sprintf("100.64.%d.0/22", i*4), "{zone: frontend, ports: [53]}", "[udp, tcp]")
	}
	var admins []string
	for i := range 10 {
		admins = append(admins, fmt.Sprintf("2001:db8:%x::/48", i+1))
		if i < 9 {
			admins = append(admins, fmt.Sprintf("192.0.2.%d/28", 64+16*i%192))
		}
	}
	rule("mgmt-admins", "["+strings.Join(admins, ", ")+"]", "{zone: mgmt, ports: [443]}", "tcp")
	for i := range 10 {
		rule(fmt.Sprintf("egress-%d", i), "frontend", fmt.Sprintf("{cidr: 198.18.%d.0/24, ports: [443]}", i), "tcp")
	}
	var ssh []string
	for i := range 8 {
		ssh = append(ssh, fmt.Sprintf("{address: 10.0.2.%d, ports: [22]}", 10+i))
	}
	rule("ssh-in", "external", "["+strings.Join(ssh, ", ")+"]", "tcp")
	for i := range 7 {
		rule(fmt.Sprintf("app-%d", i), fmt.Sprintf("203.0.113.%d", 201+i), "{zone: backend, ports: [8080]}", "tcp")
	}
	return b.String()
}

// listPolicyAddrs are addresses in and just outside listPolicy's lists.
var listPolicyAddrs = []string{
	"203.0.113.5", "198.51.100.100", "203.0.113.250", "203.0.113.201", "100.64.5.9", "100.64.200.1",
	"2001:db8:3::7", "2001:db8:99::1", "192.0.2.70", "198.18.3.3", "198.18.77.1", "10.0.2.10", "10.0.2.18",
}

var setRule = regexp.MustCompile(`--match-set (\S+) (src|dst)`)

// setRules are the rules of a fake's filter tables that match a set.
func setRules(t *testing.T, f *acltest.Fake) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(save(t, f), "\n") {
		if setRule.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

func TestListsBecomeSets(t *testing.T) {
	f := &acltest.Fake{}
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, listPolicy())); err != nil {
		t.Fatal(err)
	}
	rules := setRules(t, f)
	want := map[string]int{ // a rule's comment → members of its set
		"rule db-000 and 199 more (200 addresses": 200,
		"rule dns-00 and 11 more (12 addresses":   12, // udp
		"rule mgmt-admins (9 addresses":           9,
		"rule mgmt-admins (10 addresses":          10,
		"rule egress-0 and 9 more (10 addresses":  10,
		"rule ssh-in (8 addresses":                8,
	}
	found := map[string]int{}
	for _, r := range rules {
		name := setRule.FindStringSubmatch(r)[1]
		if len(name) > 31 || !strings.HasPrefix(name, "zn-r4-") && !strings.HasPrefix(name, "zn-r6-") {
			t.Errorf("set name %q", name)
		}
		if !strings.Contains(r, "in set "+name+")") {
			t.Errorf("comment does not name the set: %s", r)
		}
		m, ok := f.SetMembers(name)
		if !ok {
			t.Fatalf("rule names missing set: %s", r)
		}
		for c, n := range want {
			if strings.Contains(r, c) && len(m) == n {
				found[c]++
			}
		}
	}
	for c := range want {
		if found[c] == 0 {
			t.Errorf("no set rule %q...", c)
		}
	}
	// dns: udp and tcp are two sets; everything else one each.
	if len(rules) != 7 || len(f.SetNames()) != 7 {
		t.Errorf("%d set rules over %d sets, want 7 of each:\n%s", len(rules), len(f.SetNames()), strings.Join(rules, "\n"))
	}
	all := save(t, f)
	for i := range 7 {
		if !strings.Contains(all, fmt.Sprintf(`-s 203.0.113.%d/32 -d 10.0.2.0/24 -p tcp -m tcp --dport 8080 -m comment --comment "zonenet prod rule app-%d" -j ACCEPT`, 201+i, i)) {
			t.Errorf("app-%d (a list under the threshold) is not a plain rule", i)
		}
	}
	if strings.Contains(all, "rule db-001") || strings.Contains(all, "203.0.113.5/32") {
		t.Error("a merged rule is still there on its own")
	}
}

func TestSetsReapplyUpdatesInPlace(t *testing.T) {
	f := &acltest.Fake{}
	doc := listPolicy()
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, doc)); err != nil {
		t.Fatal(err)
	}
	first, names := save(t, f), f.SetNames()
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, doc)); err != nil {
		t.Fatal(err)
	}
	if save(t, f) != first || !slices.Equal(f.SetNames(), names) {
		t.Fatalf("re-apply of the same policy changed the tables or sets: %q, was %q", f.SetNames(), names)
	}
	// Without db-000 (203.0.113.1) and without the dns rules.
	smaller := strings.Replace(doc, "  - name: db-000\n    source: 203.0.113.1\n", "  - name: db-000\n    source: 203.0.113.254\n", 1)
	smaller = regexp.MustCompile(`(?m)^  - name: dns-\d+\n(    .*\n){3}`).ReplaceAllString(smaller, "")
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, smaller)); err != nil {
		t.Fatal(err)
	}
	after := f.SetNames()
	if len(after) != len(names)-2 {
		t.Errorf("sets after dropping the dns rules: %q, was %q", after, names)
	}
	for _, n := range after {
		if !slices.Contains(names, n) {
			t.Errorf("set %s is new: a list that changed must keep its set", n)
		}
		m, _ := f.SetMembers(n)
		if slices.Contains(m, netip.MustParsePrefix("203.0.113.254/32")) && slices.Contains(m, netip.MustParsePrefix("203.0.113.1/32")) {
			t.Errorf("set %s holds both the old and the new address", n)
		}
	}
	e := newEvalTable(f)
	p := parsePolicy(t, smaller)
	checkTruth(t, e, p, []string{"203.0.113.1", "203.0.113.254", "100.64.5.9", "10.0.2.5", "10.0.1.5"}, []uint16{53, 5432})
}

func TestSetsRollBackWhenRestoreFails(t *testing.T) {
	f := &acltest.Fake{}
	doc := listPolicy()
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, doc)); err != nil {
		t.Fatal(err)
	}
	table, names := save(t, f), f.SetNames()
	members := map[string][]netip.Prefix{}
	for _, n := range names {
		members[n], _ = f.SetMembers(n)
	}
	f.FailRestore = func(acl.Family, []acl.Table) error { return errors.New("injected") }
	changed := strings.Replace(doc, "source: 203.0.113.1\n", "source: 203.0.113.254\n", 1) +
		"  - name: more\n    source: [100.65.0.1, 100.65.0.2, 100.65.0.3, 100.65.0.4, 100.65.0.5, 100.65.0.6, 100.65.0.7, 100.65.0.8]\n    destination: mgmt\n    protocol: udp\n"
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, changed)); err == nil {
		t.Fatal("apply with a failing restore succeeded")
	}
	f.FailRestore = nil
	if save(t, f) != table {
		t.Error("a failed apply changed the rules")
	}
	if got := f.SetNames(); !slices.Equal(got, names) {
		t.Errorf("sets after a failed apply %q, want %q", got, names)
	}
	for _, n := range names {
		if m, _ := f.SetMembers(n); !slices.Equal(m, members[n]) {
			t.Errorf("set %s changed by a failed apply", n)
		}
	}
}

func TestSetsOfOtherNetworksStay(t *testing.T) {
	f := &acltest.Fake{}
	for _, n := range []string{"prod", "other"} {
		if err := acl.ApplyFilter(f, n, parsePolicy(t, listPolicy())); err != nil {
			t.Fatal(err)
		}
	}
	all := f.SetNames()
	if len(all) != 14 {
		t.Fatalf("two networks with 7 sets each hold %q", all)
	}
	// Leftovers of an interrupted apply of prod: a temporary and a set no
	// rule names. The next apply removes both.
	var prodSet string
	for _, r := range setRules(t, f) {
		if strings.Contains(r, "zonenet prod ") {
			prodSet = setRule.FindStringSubmatch(r)[1]
		}
	}
	tmp := "zn-t" + prodSet[4:]
	orphan := prodSet[:14] + "zzzzzzzzzzzzzzzz"
	if err := f.RestoreSets([]byte("create " + tmp + " hash:net family inet\ncreate " + orphan + " hash:net family inet\n")); err != nil {
		t.Fatal(err)
	}
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, listPolicy())); err != nil {
		t.Fatal(err)
	}
	if got := f.SetNames(); !slices.Equal(got, all) {
		t.Errorf("after re-apply: %q, want %q", got, all)
	}
	if err := acl.RemoveFilter(f, "prod"); err != nil {
		t.Fatal(err)
	}
	left := f.SetNames()
	if len(left) != 7 {
		t.Fatalf("after removing prod: %q", left)
	}
	for _, r := range setRules(t, f) {
		if strings.Contains(r, "zonenet prod ") {
			t.Errorf("rule of prod left: %s", r)
		}
		if !slices.Contains(left, setRule.FindStringSubmatch(r)[1]) {
			t.Errorf("rule of other names a set that is gone: %s", r)
		}
	}
	if err := acl.RemoveFilter(f, "other"); err != nil {
		t.Fatal(err)
	}
	if left := f.SetNames(); len(left) != 0 {
		t.Errorf("sets left after removing every network: %q", left)
	}
}

func TestSetsPerNetworkBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for port := range 40 {
		for i := range 8 {
			fmt.Fprintf(&b, "  - name: p%d-%d\n    source: 198.51.%d.%d\n    destination: {zone: backend, ports: [%d]}\n    protocol: tcp\n", port, i, port, i+1, 7000+port)
		}
	}
	p := parsePolicy(t, b.String())
	f := &acltest.Fake{}
	if err := acl.ApplyFilter(f, "prod", p); err != nil {
		t.Fatal(err)
	}
	if n := len(f.SetNames()); n != 32 {
		t.Errorf("%d sets, want the bound of 32", n)
	}
	checkTruth(t, newEvalTable(f), p, []string{"198.51.0.1", "198.51.39.8", "198.51.20.3", "10.0.2.5"}, []uint16{7000, 7020, 7039})
}

// A namespace without room for the sets fails the apply before any rule
// changes, and leaves none of the network's sets behind.
func TestSetsFillFailureLeavesNothing(t *testing.T) {
	f := &acltest.Fake{}
	var foreign strings.Builder
	for i := range 252 {
		fmt.Fprintf(&foreign, "create other-%d hash:net family inet\n", i)
	}
	if err := f.RestoreSets([]byte(foreign.String())); err != nil {
		t.Fatal(err)
	}
	before := save(t, f)
	if err := acl.ApplyFilter(f, "prod", parsePolicy(t, listPolicy())); err == nil {
		t.Fatal("apply needing 7 sets with room for 4 succeeded")
	}
	if save(t, f) != before {
		t.Error("the failed apply changed the rules")
	}
	if n := len(f.SetNames()); n != 252 {
		t.Errorf("%d sets after the failed apply, want the 252 foreign ones", n)
	}
}
