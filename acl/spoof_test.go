package acl_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
	"github.com/zonenet/zonenet/conf"
)

func spoof(id, veth string, ips ...string) acl.Spoof {
	mac, _ := net.ParseMAC("02:42:0a:00:01:05")
	s := acl.Spoof{Network: "prod", ContainerID: id, IfName: "eth0", HostVeth: veth, MAC: mac}
	for _, ip := range ips {
		s.IPs = append(s.IPs, netip.MustParseAddr(ip))
	}
	return s
}

// lastField is a rule's jump target.
func lastField(rule string) string {
	f := strings.Fields(rule)
	return f[len(f)-1]
}

func TestAddContainerOneRestore(t *testing.T) {
	f := &acltest.Fake{}
	s := spoof("c1", "zn1234", "10.0.1.5")
	hp := acl.HostPorts{Network: "prod", ContainerID: "c1", IfName: "eth0", IP: netip.MustParseAddr("10.0.1.5"),
		Mappings: []conf.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}}
	for i := 0; i < 2; i++ { // a retried ADD changes nothing
		before := f.Restores
		if err := acl.AddContainer(f, acl.Container{Ports: &hp, Spoof: &s}); err != nil {
			t.Fatal(err)
		}
		if n := f.Restores - before; n != 1 {
			t.Fatalf("ADD %d took %d restores, want 1 (nat and filter together)", i, n)
		}
	}
	for _, from := range []string{"FORWARD", "INPUT"} {
		rules, _ := f.Rules(acl.IPv4, "filter", from)
		if len(rules) != 1 || lastField(rules[0]) != acl.ChainSpoof {
			t.Errorf("%s = %q, want one jump to %s", from, rules, acl.ChainSpoof)
		}
	}
	top, _ := f.Rules(acl.IPv4, "filter", acl.ChainSpoof)
	if len(top) != 1 || !strings.Contains(top[0], "-m physdev --physdev-in zn1234 ") {
		t.Fatalf("%s = %q, want one physdev jump", acl.ChainSpoof, top)
	}
	ch := lastField(top[0])
	if !strings.HasPrefix(ch, "ZN-SPOOF-") || len(ch) > 28 {
		t.Errorf("chain name %q", ch)
	}
	rules, _ := f.Rules(acl.IPv4, "filter", ch)
	want := []string{"-s 10.0.1.5/32 -m mac --mac-source 02:42:0A:00:01:05 ", "-j DROP"}
	if len(rules) != len(want) {
		t.Fatalf("%s = %q", ch, rules)
	}
	for i, w := range want {
		if !strings.Contains(rules[i], w) || !strings.Contains(rules[i], `--comment "zonenet prod c1/eth0`) {
			t.Errorf("rule %d = %q, want %q and the owner comment", i, rules[i], w)
		}
	}
	if chains := f.Chains(acl.IPv6, "filter"); len(chains) > 0 {
		t.Errorf("IPv6 chains %q for an IPv4-only container", chains)
	}
	if ok, err := acl.HasSpoof(f, s); !ok || err != nil {
		t.Errorf("HasSpoof = %v, %v", ok, err)
	}
	if ok, err := acl.HasHostPorts(f, hp); !ok || err != nil {
		t.Errorf("HasHostPorts = %v, %v", ok, err)
	}

	before := f.Restores
	if err := acl.RemoveContainer(f, acl.Container{Ports: &hp, Spoof: &s}); err != nil {
		t.Fatal(err)
	}
	if n := f.Restores - before; n != 1 {
		t.Errorf("DEL took %d restores, want 1", n)
	}
	for _, tab := range []string{"filter", "nat"} {
		for _, c := range f.Chains(acl.IPv4, tab) {
			if c != acl.ChainHostports {
				t.Errorf("chain %s left in %s after removal", c, tab)
			}
		}
	}
	for _, from := range []string{"FORWARD", "INPUT"} {
		if rules, _ := f.Rules(acl.IPv4, "filter", from); len(rules) > 0 {
			t.Errorf("%s = %q after removal", from, rules)
		}
	}
	if ok, _ := acl.HasSpoof(f, s); ok {
		t.Error("HasSpoof after removal")
	}
	before = f.Restores
	if err := acl.RemoveContainer(f, acl.Container{Ports: &hp, Spoof: &s}); err != nil || f.Restores != before {
		t.Errorf("second removal: %v, %d restores", err, f.Restores-before)
	}
}

func TestSpoofIPv6AndSharedStage(t *testing.T) {
	f := &acltest.Fake{}
	a := spoof("a", "zna", "10.0.1.5", "fd00::5")
	b := spoof("b", "znb", "fd00::6")
	for _, s := range []acl.Spoof{a, b} {
		if err := acl.AddContainer(f, acl.Container{Spoof: &s}); err != nil {
			t.Fatal(err)
		}
	}
	top, _ := f.Rules(acl.IPv6, "filter", acl.ChainSpoof)
	if len(top) != 2 {
		t.Fatalf("%s (IPv6) = %q, want two containers", acl.ChainSpoof, top)
	}
	rules, _ := f.Rules(acl.IPv6, "filter", lastField(top[0]))
	want := []string{"-s fd00::5/128 ", "-s fe80::/10 ", "-s ::/128 ", "-j DROP"}
	if len(rules) != len(want) {
		t.Fatalf("IPv6 chain = %q", rules)
	}
	for i, w := range want {
		if !strings.Contains(rules[i], w) || (w != "-j DROP" && !strings.Contains(rules[i], "--mac-source")) {
			t.Errorf("rule %d = %q, want %q from the MAC", i, rules[i], w)
		}
	}

	// Removing one container keeps the stage the other one uses.
	if err := acl.RemoveContainer(f, acl.Container{Spoof: &a}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := acl.HasSpoof(f, b); !ok {
		t.Error("removing a broke b's chain")
	}
	if chains := f.Chains(acl.IPv4, "filter"); len(chains) > 0 {
		t.Errorf("IPv4 chains left after a's removal: %q", chains)
	}
	if err := acl.RemoveContainer(f, acl.Container{Spoof: &b}); err != nil {
		t.Fatal(err)
	}
	if chains := f.Chains(acl.IPv6, "filter"); len(chains) > 0 {
		t.Errorf("IPv6 chains left: %q", chains)
	}
}
