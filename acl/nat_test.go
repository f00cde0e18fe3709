package acl_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
	"github.com/zonenet/zonenet/conf"
)

func masq(zone, subnet string) acl.Masq {
	return acl.Masq{Network: "prod", Zone: zone, Subnet: netip.MustParsePrefix(subnet),
		Internal: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24"), netip.MustParsePrefix("10.0.1.0/24")}}
}

func TestEnsureMasqIdempotent(t *testing.T) {
	f := &acltest.Fake{}
	m := masq("frontend", "10.0.1.0/24")
	for i := 0; i < 3; i++ {
		if err := acl.EnsureMasq(f, m); err != nil {
			t.Fatal(err)
		}
	}
	post, _ := f.Rules(acl.IPv4, "nat", "POSTROUTING")
	if len(post) != 1 || !strings.HasSuffix(post[0], "-j "+acl.ChainPostrouting) {
		t.Fatalf("POSTROUTING = %q, want exactly one jump", post)
	}
	top, _ := f.Rules(acl.IPv4, "nat", acl.ChainPostrouting)
	if len(top) != 1 || !strings.Contains(top[0], "-s 10.0.1.0/24") {
		t.Fatalf("%s = %q", acl.ChainPostrouting, top)
	}
	zone := strings.Fields(top[0])[len(strings.Fields(top[0]))-1]
	if len(zone) > 28 {
		t.Errorf("chain name %s longer than 28", zone)
	}
	rules, _ := f.Rules(acl.IPv4, "nat", zone)
	want := []string{"-d 10.0.1.0/24", "-d 10.0.2.0/24", "-d 224.0.0.0/4", "MASQUERADE"}
	if len(rules) != len(want) {
		t.Fatalf("zone chain = %q", rules)
	}
	for i, w := range want {
		if !strings.Contains(rules[i], w) || !strings.Contains(rules[i], "--comment") {
			t.Errorf("rule %d = %q, want %q and an owner comment", i, rules[i], w)
		}
	}
	if ok, err := acl.HasMasq(f, m); !ok || err != nil {
		t.Errorf("HasMasq = %v, %v", ok, err)
	}
}

func TestRemoveMasqAndUnused(t *testing.T) {
	f := &acltest.Fake{}
	fe, be := masq("frontend", "10.0.1.0/24"), masq("backend", "10.0.2.0/24")
	for _, m := range []acl.Masq{fe, be} {
		if err := acl.EnsureMasq(f, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := acl.RemoveMasq(f, acl.IPv4, "prod", "frontend"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := acl.HasMasq(f, fe); ok {
		t.Error("frontend NAT still present")
	}
	if ok, _ := acl.HasMasq(f, be); !ok {
		t.Error("backend NAT was removed with frontend's")
	}
	// Still in use: the top-level chain stays.
	if err := acl.RemoveUnused(f, acl.IPv4); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Rules(acl.IPv4, "nat", acl.ChainPostrouting); !ok {
		t.Fatal("top-level chain removed while in use")
	}
	if err := acl.RemoveMasq(f, acl.IPv4, "prod", "backend"); err != nil {
		t.Fatal(err)
	}
	if err := acl.RemoveMasq(f, acl.IPv4, "prod", "backend"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if err := acl.RemoveUnused(f, acl.IPv4); err != nil {
		t.Fatal(err)
	}
	if c := f.Chains(acl.IPv4, "nat"); len(c) != 0 {
		t.Errorf("chains left: %v", c)
	}
	if post, _ := f.Rules(acl.IPv4, "nat", "POSTROUTING"); len(post) != 0 {
		t.Errorf("POSTROUTING left: %q", post)
	}
}

func TestHostPorts(t *testing.T) {
	f := &acltest.Fake{}
	h := acl.HostPorts{Network: "prod", ContainerID: "c1", IfName: "eth0", IP: netip.MustParseAddr("10.0.1.5"),
		Mappings: []conf.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
			{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: netip.MustParseAddr("192.0.2.1")}}}
	h2 := h
	h2.ContainerID = "c2"
	for _, x := range []acl.HostPorts{h, h2, h} {
		if err := acl.AddHostPorts(f, x); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []string{"PREROUTING", "OUTPUT"} {
		if r, _ := f.Rules(acl.IPv4, "nat", from); len(r) != 1 {
			t.Errorf("%s = %q, want one jump", from, r)
		}
	}
	if r, _ := f.Rules(acl.IPv4, "nat", acl.ChainHostports); len(r) != 2 {
		t.Fatalf("%s = %q, want one jump per container", acl.ChainHostports, r)
	}
	save, _ := f.Save(acl.IPv4, "nat")
	for _, w := range []string{"--dport 8080 ", "DNAT --to-destination 10.0.1.5:80", "-d 192.0.2.1/32 -p udp -m udp --dport 5353"} {
		if !strings.Contains(string(save), w) {
			t.Errorf("rules lack %q:\n%s", w, save)
		}
	}
	for _, x := range []acl.HostPorts{h, h2} {
		if err := acl.RemoveHostPorts(f, x); err != nil {
			t.Fatal(err)
		}
		if ok, _ := acl.HasHostPorts(f, x); ok {
			t.Errorf("%s still has ports", x.ContainerID)
		}
	}
	if err := acl.RemoveUnused(f, acl.IPv4); err != nil {
		t.Fatal(err)
	}
	if c := f.Chains(acl.IPv4, "nat"); len(c) != 0 {
		t.Errorf("chains left: %v", c)
	}
}

// Concurrent zone setups must leave exactly one jump each: the save and
// the restore that depends on it happen under one lock.
func TestEnsureMasqConcurrent(t *testing.T) {
	f := &acltest.Fake{}
	zones := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	errs := make(chan error, len(zones)*2)
	for i, z := range zones {
		for j := 0; j < 2; j++ {
			go func() {
				errs <- acl.EnsureMasq(f, masq(z, fmt.Sprintf("10.9.%d.0/24", i)))
			}()
		}
	}
	for range len(zones) * 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if post, _ := f.Rules(acl.IPv4, "nat", "POSTROUTING"); len(post) != 1 {
		t.Errorf("POSTROUTING has %d jumps, want 1", len(post))
	}
	if top, _ := f.Rules(acl.IPv4, "nat", acl.ChainPostrouting); len(top) != len(zones) {
		t.Errorf("%s has %d rules, want %d", acl.ChainPostrouting, len(top), len(zones))
	}
}
