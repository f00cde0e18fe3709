package acl_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
)

func guardZones() []acl.GuardZone {
	return []acl.GuardZone{
		{Name: "frontend", Bridge: "zn-prod-front", Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}},
		{Name: "mgmt", Bridge: "zn-prod-mgmt", Subnets: []netip.Prefix{
			netip.MustParsePrefix("10.0.3.0/24"), netip.MustParsePrefix("fd00:0:3::/64")}},
	}
}

// TestGuardApplyRemove: one chain per family, entered from the zone
// bridges, a set per zone subnet (bitmap:ip,mac for IPv4, hash:ip for
// IPv6); applying twice changes nothing; removal leaves nothing.
func TestGuardApplyRemove(t *testing.T) {
	f := &acltest.Fake{}
	sets := &acltest.MemberSets{Fake: f}
	zones := guardZones()
	for i := 0; i < 2; i++ {
		if err := acl.ApplyGuard(f, sets, "prod", zones); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []string{"FORWARD", "INPUT"} {
		rules, _ := f.Rules(acl.IPv4, "filter", from)
		if len(rules) != 1 || !strings.HasSuffix(rules[0], "-j "+acl.ChainSpoof) {
			t.Errorf("%s = %q, want one jump to %s", from, rules, acl.ChainSpoof)
		}
	}
	top4, _ := f.Rules(acl.IPv4, "filter", acl.ChainSpoof)
	top6, _ := f.Rules(acl.IPv6, "filter", acl.ChainSpoof)
	if len(top4) != 2 || len(top6) != 1 {
		t.Errorf("jumps from %s: v4 %q, v6 %q; want one per zone bridge of the family", acl.ChainSpoof, top4, top6)
	}
	for _, l := range top4 {
		if !strings.Contains(l, "-i zn-prod-") || !strings.Contains(l, "--physdev-in zn+") {
			t.Errorf("jump %q does not select the zone bridge and zonenet veths", l)
		}
	}
	want := map[string]string{
		acl.GuardSetName("prod", "frontend", acl.IPv4): "bitmap:ip,mac",
		acl.GuardSetName("prod", "mgmt", acl.IPv4):     "bitmap:ip,mac",
		acl.GuardSetName("prod", "mgmt", acl.IPv6):     "hash:ip",
	}
	if got := sets.Names(); len(got) != len(want) {
		t.Fatalf("sets %q, want %d", got, len(want))
	}
	for name, typ := range want {
		info, found, _ := sets.Info(name)
		if !found || info.Type != typ {
			t.Errorf("set %s: found %v type %q, want %s", name, found, info.Type, typ)
		}
	}
	if err := acl.RemoveGuard(f, sets, "prod", zones); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []acl.Family{acl.IPv4, acl.IPv6} {
		d, _ := f.Save(fam, "filter")
		if strings.Contains(string(d), "ZN-SPF-") || strings.Contains(string(d), acl.ChainSpoof) {
			t.Errorf("left after removal:\n%s", d)
		}
	}
	if got := sets.Names(); len(got) > 0 {
		t.Errorf("sets left after removal: %q", got)
	}
}

// TestGuardMembers: a member binds its IPv4 address to its MAC, its IPv6
// address alone; HasMember notices a missing entry or another MAC.
func TestGuardMembers(t *testing.T) {
	f := &acltest.Fake{}
	sets := &acltest.MemberSets{Fake: f}
	zones := guardZones()
	if err := acl.ApplyGuard(f, sets, "prod", zones); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:07")
	m := acl.Member{Network: "prod", Zone: zones[1], MAC: mac,
		IPs: []netip.Addr{netip.MustParseAddr("10.0.3.7"), netip.MustParseAddr("fd00:0:3::7")}}
	if ok, _ := acl.HasMember(sets, m); ok {
		t.Fatal("HasMember before AddMember")
	}
	if err := acl.AddMember(sets, m); err != nil {
		t.Fatal(err)
	}
	if ok, err := acl.HasMember(sets, m); !ok || err != nil {
		t.Fatalf("HasMember = %v, %v", ok, err)
	}
	v4, _, _ := sets.Info(acl.GuardSetName("prod", "mgmt", acl.IPv4))
	if len(v4.Entries) != 1 || v4.Entries[0].MAC.String() != mac.String() {
		t.Errorf("IPv4 set = %+v, want 10.0.3.7 bound to %s", v4.Entries, mac)
	}
	other := m
	other.MAC, _ = net.ParseMAC("02:00:00:00:00:08")
	if ok, _ := acl.HasMember(sets, other); ok {
		t.Error("HasMember accepts another MAC")
	}
	if err := acl.RemoveMember(sets, m); err != nil {
		t.Fatal(err)
	}
	if err := acl.RemoveMember(sets, m); err != nil {
		t.Fatalf("second RemoveMember: %v", err)
	}
	if ok, _ := acl.HasMember(sets, m); ok {
		t.Error("HasMember after RemoveMember")
	}
}

// TestGuardIntact: sets that no rule references mean a flushed table.
func TestGuardIntact(t *testing.T) {
	f := &acltest.Fake{}
	sets := &acltest.MemberSets{Fake: f}
	zones := guardZones()
	if ok, _ := acl.GuardIntact(sets, "prod", zones); ok {
		t.Fatal("intact before any apply")
	}
	if err := acl.ApplyGuard(f, sets, "prod", zones); err != nil {
		t.Fatal(err)
	}
	for _, n := range sets.Names() {
		sets.Refs(n, 1)
	}
	if ok, _ := acl.GuardIntact(sets, "prod", zones); !ok {
		t.Error("not intact after apply")
	}
	sets.Refs(acl.GuardSetName("prod", "mgmt", acl.IPv6), 0)
	if ok, _ := acl.GuardIntact(sets, "prod", zones); ok {
		t.Error("intact with an unreferenced set")
	}
}
