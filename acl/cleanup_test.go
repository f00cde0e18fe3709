package acl_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
	"github.com/zonenet/zonenet/conf"
)

// nftRunner refuses what iptables-nft refuses: deleting a chain in the
// same restore that deletes a jump to it.
type nftRunner struct {
	*acltest.Fake
	restores [][]acl.Table
}

func (n *nftRunner) RestoreTables(f acl.Family, tables []acl.Table) error {
	n.restores = append(n.restores, tables)
	var body strings.Builder
	for _, t := range tables {
		body.Write(t.Body)
	}
	for _, l := range strings.Split(body.String(), "\n") {
		if ch, ok := strings.CutPrefix(l, "-X "); ok && strings.Contains(body.String(), " -j "+ch+"\n") {
			return fmt.Errorf("nft: chain %s deleted in the commit that removes a jump to it", ch)
		}
	}
	return n.Fake.RestoreTables(f, tables)
}

func (n *nftRunner) Restore(f acl.Family, t string, body []byte) error {
	return n.RestoreTables(f, []acl.Table{{Name: t, Body: body}})
}

// foreign are the lines of every table that are not zonenet's.
func foreign(t *testing.T, r acl.Runner) []string {
	t.Helper()
	var out []string
	for _, f := range []acl.Family{acl.IPv4, acl.IPv6} {
		for _, tab := range []string{"filter", "nat", "mangle"} {
			b, err := r.Save(f, tab)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(b), "\n") {
				if !strings.Contains(l, "ZN-") && !strings.Contains(l, "ZONENET-") && !strings.Contains(l, "zn-") {
					out = append(out, fmt.Sprintf("%d %s", f, l))
				}
			}
		}
	}
	return out
}

func ours(t *testing.T, r acl.Runner) []string {
	t.Helper()
	var out []string
	for _, f := range []acl.Family{acl.IPv4, acl.IPv6} {
		for _, tab := range []string{"filter", "nat", "mangle"} {
			b, _ := r.Save(f, tab)
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "ZN-") || strings.Contains(l, "ZONENET-") || strings.Contains(l, "zn-") {
					out = append(out, fmt.Sprintf("%d %s: %s", f, tab, l))
				}
			}
		}
	}
	return out
}

func restore(t *testing.T, r acl.Runner, f acl.Family, table, body string) {
	t.Helper()
	if err := r.Restore(f, table, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

// TestCleanupRemovesOnlyOurs fills both families with what zonenet makes
// (NAT, published ports, anti-spoofing, a policy), leftovers of ours in
// another table and in foreign chains, and foreign chains and rules; a
// cleanup leaves exactly the foreign part, and a second finds nothing.
func TestCleanupRemovesOnlyOurs(t *testing.T) {
	r := &nftRunner{Fake: &acltest.Fake{}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Foreign objects first, as a host has them before zonenet comes.
	for _, f := range []acl.Family{acl.IPv4, acl.IPv6} {
		restore(t, r, f, "filter", ":DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\n")
	}
	restore(t, r, acl.IPv4, "nat", ":DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n")
	restore(t, r, acl.IPv4, "mangle", ":PREROUTING - [0:0]\n:USER-MARK - [0:0]\n-A PREROUTING -j USER-MARK\n")

	must(acl.EnsureMasq(r, masq("frontend", "10.0.1.0/24")))
	must(acl.ApplyFilter(r, "prod", parsePolicy(t, testPolicy)))
	must(acl.ApplyGuard(r, &acltest.MemberSets{Fake: r.Fake}, "prod", guardZones()))
	hp := acl.HostPorts{Network: "prod", ContainerID: "c1", IfName: "eth0", IP: netip.MustParseAddr("10.0.3.5"),
		Mappings: []conf.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}}
	must(acl.AddHostPorts(r, hp))
	// Leftovers no acl function makes: a chain of ours in mangle, a
	// foreign chain jumping into ours, rules using an ipset of ours.
	r.DeclareSet("zn-blocked")
	r.DeclareSet("user-set")
	restore(t, r, acl.IPv4, "mangle", ":ZN-OLD-X - [0:0]\n-A ZN-OLD-X -j RETURN\n-A PREROUTING -j ZN-OLD-X\n-A USER-MARK -j ZN-OLD-X\n")
	restore(t, r, acl.IPv4, "filter", "-A DOCKER-USER -s 192.0.2.0/24 -j ZONENET-FORWARD\n"+
		"-A INPUT -m set --match-set zn-blocked src -j DROP\n-A INPUT -m set --match-set user-set src -j DROP\n")

	want := foreign(t, r)
	r.restores = nil
	var found []string
	must(acl.WithLock(r, func() error {
		p, err := acl.PlanCleanup(r)
		if err != nil {
			return err
		}
		if p.Empty() {
			t.Fatal("plan of a full host is empty")
		}
		return p.Apply(r, func(item string) { found = append(found, item) })
	}))
	if left := ours(t, r); len(left) > 0 {
		t.Errorf("left after cleanup:\n%s", strings.Join(left, "\n"))
	}
	if got := foreign(t, r); !slices.Equal(got, want) {
		t.Errorf("foreign rules changed:\n got %q\nwant %q", got, want)
	}
	for _, w := range []string{
		`iptables filter rule: -A INPUT -m set --match-set zn-blocked src -j DROP`,
		`iptables filter rule: -A DOCKER-USER -s 192.0.2.0/24 -j ZONENET-FORWARD`,
		`iptables mangle rule: -A USER-MARK -j ZN-OLD-X`,
		`iptables mangle chain ZN-OLD-X (1 rule)`,
		`ip6tables filter chain ZONENET-SPOOF (1 rule)`,
		`iptables nat chain ZONENET-HOSTPORTS (1 rule)`,
	} {
		if !slices.Contains(found, w) {
			t.Errorf("reported items lack %q:\n%s", w, strings.Join(found, "\n"))
		}
	}
	// Two restores per family: unhook and flush, then delete.
	if len(r.restores) != 4 {
		t.Errorf("%d restores, want 4 (two per family)", len(r.restores))
	}
	p, err := acl.PlanCleanup(r)
	if err != nil || !p.Empty() {
		t.Errorf("second plan: %v, %q; want empty", err, p.Items())
	}
}

// savedRunner serves fixed iptables-save text and applies nothing.
type savedRunner struct {
	acltest.Fake
	saved map[string]string // "4/filter" → iptables-save output
}

func (s *savedRunner) Save(f acl.Family, t string) ([]byte, error) {
	return []byte(s.saved[fmt.Sprintf("%d/%s", f, t)]), nil
}

// Words inside a quoted comment are not options, and a table this kernel
// lacks is skipped.
func TestCleanupReadsSaveWords(t *testing.T) {
	r := &savedRunner{saved: map[string]string{"4/filter": `*filter
:FORWARD DROP [10:20]
:USER - [0:0]
:ZN-X - [0:0]
-A FORWARD -m comment --comment "see -j ZN-FOO and --match-set zn-s" -j USER
-A FORWARD -m comment --comment "a \"quoted -g\" word" -g ZN-X
-A USER -m comment --comment nospace -j ZN-X
-A USER -m comment --comment nospace -j ZN-X
COMMIT
`}}
	p, err := acl.PlanCleanup(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`iptables filter rule: -A FORWARD -m comment --comment "a \"quoted -g\" word" -g ZN-X`,
		`iptables filter rule: -A USER -m comment --comment nospace -j ZN-X`,
		`iptables filter rule: -A USER -m comment --comment nospace -j ZN-X`,
		`iptables filter chain ZN-X (0 rules)`,
	}
	if got := p.Items(); !slices.Equal(got, want) {
		t.Errorf("items:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// fakeSets is an ipset table where a set listed in another cannot be
// destroyed before it.
type fakeSets struct {
	sets      map[string][]string // name → members that are sets
	destroyed []string
}

func (f *fakeSets) ListSets() ([]string, error) {
	var out []string
	for n := range f.sets {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// RestoreSets takes the "destroy NAME" lines cleanup sends.
func (f *fakeSets) RestoreSets(batch []byte) error {
	name := strings.TrimSpace(strings.TrimPrefix(string(batch), "destroy "))
	for n, members := range f.sets {
		if slices.Contains(members, name) {
			return fmt.Errorf("set %s is in use by %s", name, n)
		}
	}
	delete(f.sets, name)
	f.destroyed = append(f.destroyed, name)
	return nil
}

func TestDestroyOwnSets(t *testing.T) {
	s := &fakeSets{sets: map[string][]string{"zn-a": nil, "zn-all": {"zn-a", "zn-b"}, "zn-b": nil, "user": {"x"}, "x": nil}}
	var dry []string
	if err := acl.DestroyOwnSets(s, true, func(n string) { dry = append(dry, n) }); err != nil {
		t.Fatal(err)
	}
	if len(s.destroyed) != 0 || !slices.Equal(dry, []string{"zn-a", "zn-all", "zn-b"}) {
		t.Fatalf("dry run destroyed %q, listed %q", s.destroyed, dry)
	}
	if err := acl.DestroyOwnSets(s, false, nil); err != nil {
		t.Fatal(err)
	}
	if names, _ := s.ListSets(); !slices.Equal(names, []string{"user", "x"}) {
		t.Errorf("sets left %q, want only the foreign ones", names)
	}

	// A set of ours a foreign one still lists cannot go: an error, not a loop.
	s = &fakeSets{sets: map[string][]string{"zn-a": nil, "user": {"zn-a"}}}
	if err := acl.DestroyOwnSets(s, false, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("err = %v, want the set's refusal", err)
	}
}
