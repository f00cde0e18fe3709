package acl_test

import (
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
)

const guardRule = `-A INPUT -p udp -m udp --dport 4789 -m set ! --match-set zn-vxlan-peers src -m comment --comment "zonenet vxlan: known peers only" -j DROP`

func TestVXLANGuardIdempotent(t *testing.T) {
	f := &acltest.Fake{}
	f.DeclareSet("zn-vxlan-peers") // made by the overlay over netlink
	// Someone else's rule already in INPUT: the guard goes above it and
	// leaves it alone.
	if err := f.Restore(acl.IPv4, "filter", []byte("-A INPUT -s 192.0.2.0/24 -j ACCEPT\n")); err != nil {
		t.Fatal(err)
	}
	g := acl.VXLANGuard{Port: 4789, PeerSet: "zn-vxlan-peers"}
	if err := acl.EnsureVXLANGuard(f, g); err != nil {
		t.Fatal(err)
	}
	rules, _ := f.Rules(acl.IPv4, "filter", "INPUT")
	want := []string{guardRule, "-A INPUT -s 192.0.2.0/24 -j ACCEPT"}
	if strings.Join(rules, "\n") != strings.Join(want, "\n") {
		t.Fatalf("INPUT after Ensure:\n%s\nwant:\n%s", strings.Join(rules, "\n"), strings.Join(want, "\n"))
	}
	restores := f.Restores
	if err := acl.EnsureVXLANGuard(f, g); err != nil {
		t.Fatal(err)
	}
	if f.Restores != restores {
		t.Fatalf("second Ensure made %d restores, want none", f.Restores-restores)
	}
	if ok, err := acl.HasVXLANGuard(f, g); err != nil || !ok {
		t.Fatalf("HasVXLANGuard = %v, %v", ok, err)
	}

	// A new port replaces the old rule in the same restore.
	g2 := acl.VXLANGuard{Port: 8472, PeerSet: "zn-vxlan-peers"}
	if err := acl.EnsureVXLANGuard(f, g2); err != nil {
		t.Fatal(err)
	}
	if f.Restores != restores+1 {
		t.Fatalf("port change made %d restores, want 1", f.Restores-restores)
	}
	rules, _ = f.Rules(acl.IPv4, "filter", "INPUT")
	if len(rules) != 2 || !strings.Contains(rules[0], "--dport 8472") {
		t.Fatalf("INPUT after port change: %q", rules)
	}
	if ok, _ := acl.HasVXLANGuard(f, g); ok {
		t.Fatal("HasVXLANGuard reports the old port")
	}

	if err := acl.RemoveVXLANGuard(f); err != nil {
		t.Fatal(err)
	}
	rules, _ = f.Rules(acl.IPv4, "filter", "INPUT")
	if len(rules) != 1 || rules[0] != "-A INPUT -s 192.0.2.0/24 -j ACCEPT" {
		t.Fatalf("INPUT after Remove: %q", rules)
	}
	restores = f.Restores
	if err := acl.RemoveVXLANGuard(f); err != nil {
		t.Fatal(err)
	}
	if f.Restores != restores {
		t.Fatal("Remove with nothing to remove made a restore")
	}
}

func TestVXLANGuardRemovesDuplicates(t *testing.T) {
	f := &acltest.Fake{}
	f.DeclareSet("zn-vxlan-peers") // made by the overlay over netlink
	if err := f.Restore(acl.IPv4, "filter", []byte(guardRule+"\n"+guardRule+"\n")); err != nil {
		t.Fatal(err)
	}
	g := acl.VXLANGuard{Port: 4789, PeerSet: "zn-vxlan-peers"}
	if ok, _ := acl.HasVXLANGuard(f, g); ok {
		t.Fatal("HasVXLANGuard accepts a doubled rule")
	}
	if err := acl.EnsureVXLANGuard(f, g); err != nil {
		t.Fatal(err)
	}
	if rules, _ := f.Rules(acl.IPv4, "filter", "INPUT"); len(rules) != 1 || rules[0] != guardRule {
		t.Fatalf("INPUT: %q", rules)
	}
}

func TestVXLANGuardValidates(t *testing.T) {
	f := &acltest.Fake{}
	f.DeclareSet("zn-vxlan-peers") // made by the overlay over netlink
	for _, g := range []acl.VXLANGuard{
		{Port: 0, PeerSet: "s"},
		{Port: 4789, PeerSet: ""},
		{Port: 4789, PeerSet: `a" -j ACCEPT`},
		{Port: 4789, PeerSet: strings.Repeat("s", 32)},
	} {
		if err := acl.EnsureVXLANGuard(f, g); err == nil {
			t.Errorf("EnsureVXLANGuard(%+v) = nil, want an error", g)
		}
	}
	if f.Restores != 0 {
		t.Fatal("an invalid guard reached iptables")
	}
}
