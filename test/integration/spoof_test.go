//go:build linux

package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/test/cnitest"
)

// spoofEnv is a dual-stack zone under a policy that allows everything, so
// only anti-spoofing can stop traffic between its containers.
func spoofEnv(t *testing.T) *env {
	e := newEnv(t, "1.1.0")
	e.conf.Zones[0].Subnet6 = cnitest.Subnet6(t).String()
	e.conf.IPMasq = cnitest.Bool(false)
	p := filepath.Join(t.TempDir(), "open.yaml")
	doc := "version: 1\ndefaults: {intraZone: allow, interZone: allow, toExternal: allow, fromExternal: allow, toHost: allow, fromHost: allow}\n"
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	e.conf.Extra = map[string]any{"policy": p}
	return e
}

// spoofRules are the host's iptables lines naming an anti-spoofing chain.
func spoofRules(t *testing.T, e *env) []string {
	var out []string
	for _, v6 := range []bool{false, true} {
		for _, l := range e.host.Iptables(t, v6) {
			if strings.Contains(l, "ZN-SPF-") || strings.Contains(l, "ZONENET-SPOOF") {
				out = append(out, l)
			}
		}
	}
	return out
}

// guardMembers are the members of the network's anti-spoofing sets, and
// whether any such set exists.
func guardMembers(t *testing.T, e *env) (members []string, exists bool) {
	sets := e.host.IPSets(t)
	for _, z := range e.conf.Zones {
		for _, f := range []acl.Family{acl.IPv4, acl.IPv6} {
			m, ok := sets[acl.GuardSetName(e.conf.Name, z.Name, f)]
			exists = exists || ok
			members = append(members, m...)
		}
	}
	return members, exists
}

// TestAntiSpoofing: under a policy, a container that takes another source
// address, or another MAC, gets nothing through to a neighbour's server,
// over IPv4 and IPv6, while an unmodified one still connects; DEL leaves
// no anti-spoofing chain or jump behind.
func TestAntiSpoofing(t *testing.T) {
	t.Parallel()
	e := spoofEnv(t)
	z := e.conf.Zones[0]
	server, good, badIP, badMAC := e.newCtr(), e.newCtr(), e.newCtr(), e.newCtr()
	ctrs := []*ctr{server, good, badIP, badMAC}
	atts := map[*ctr]attachment{}
	for _, c := range ctrs {
		e.add(c)
		atts[c] = e.expectAttached(c, z)
		if cerr := e.check(c); cerr != nil {
			t.Fatalf("CHECK %s: %s (%s)", c.ID, cerr.Msg, cerr.Details)
		}
		c.NS.WaitAddrsReady(t, 5*time.Second)
	}
	if len(spoofRules(t, e)) == 0 {
		t.Fatal("no anti-spoofing rule after ADD under a policy")
	}
	// Each container: its IPv4 address bound to its MAC, its IPv6 address.
	if m, _ := guardMembers(t, e); len(m) != 2*len(ctrs) {
		t.Fatalf("anti-spoofing sets hold %q, want 2 entries for each of %d containers", m, len(ctrs))
	}
	srv4 := hostPort(atts[server].ip4(), 8080)
	srv6 := hostPort(atts[server].ip6(), 8081)
	cnitest.EchoTCP(t, server.NS, srv4, "srv4")
	cnitest.EchoTCP(t, server.NS, srv6, "srv6")
	for _, c := range []*ctr{good, badIP, badMAC} {
		cnitest.ExpectTCP(t, c.NS, srv4, "srv4")
		cnitest.ExpectTCP(t, c.NS, srv6, "srv6")
	}

	// Another address of the zone, in place of the leased one.
	sub4, sub6 := netip.MustParsePrefix(z.Subnet), netip.MustParsePrefix(z.Subnet6)
	a := atts[badIP]
	badIP.NS.Run(t, "ip", "addr", "del", netip.PrefixFrom(a.ip4(), sub4.Bits()).String(), "dev", badIP.IfName)
	badIP.NS.Run(t, "ip", "addr", "add", netip.PrefixFrom(cnitest.Nth(sub4, 200), sub4.Bits()).String(), "dev", badIP.IfName)
	badIP.NS.Run(t, "ip", "-6", "addr", "del", netip.PrefixFrom(a.ip6(), sub6.Bits()).String(), "dev", badIP.IfName)
	badIP.NS.Run(t, "ip", "-6", "addr", "add", netip.PrefixFrom(cnitest.Nth(sub6, 200), sub6.Bits()).String(), "dev", badIP.IfName, "nodad")
	cnitest.ExpectNoTCP(t, badIP.NS, srv4)
	cnitest.ExpectNoTCP(t, badIP.NS, srv6)

	// Same addresses, another MAC.
	badMAC.NS.Run(t, "ip", "link", "set", badMAC.IfName, "address", "02:00:5e:00:53:99")
	cnitest.ExpectNoTCP(t, badMAC.NS, srv4)
	cnitest.ExpectNoTCP(t, badMAC.NS, srv6)

	cnitest.ExpectTCP(t, good.NS, srv4, "srv4")
	cnitest.ExpectTCP(t, good.NS, srv6, "srv6")
	if drops := e.host.RulesMatching(t, "ZN-SPF-", "-j DROP"); len(drops) == 0 {
		t.Error("no DROP rule in the anti-spoofing chains")
	}

	for _, c := range ctrs {
		e.del(c)
		e.expectDetached(c, atts[c])
	}
	if m, _ := guardMembers(t, e); len(m) > 0 {
		t.Errorf("anti-spoofing entries left after DEL: %q", m)
	}
	e.gc()
	if left := spoofRules(t, e); len(left) > 0 {
		t.Errorf("anti-spoofing rules left after GC:\n%s", strings.Join(left, "\n"))
	}
	if _, exists := guardMembers(t, e); exists {
		t.Error("anti-spoofing sets left after GC")
	}
}

// TestAntiSpoofingGC: GC removes the chain of an attachment it collects.
func TestAntiSpoofingGC(t *testing.T) {
	t.Parallel()
	e := spoofEnv(t)
	c := e.newCtr()
	e.add(c)
	if len(spoofRules(t, e)) == 0 {
		t.Fatal("no anti-spoofing rule after ADD under a policy")
	}
	e.gc()
	if left := spoofRules(t, e); len(left) > 0 {
		t.Errorf("anti-spoofing rules left after GC:\n%s", strings.Join(left, "\n"))
	}
	if m, exists := guardMembers(t, e); exists {
		t.Errorf("anti-spoofing sets left after GC (members %q)", m)
	}
}

// TestNoPolicyNoSpoofChain: without a policy ADD adds no filter rules.
func TestNoPolicyNoSpoofChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	e.conf.IPMasq = cnitest.Bool(false)
	c := e.newCtr()
	e.add(c)
	if rules := e.host.RulesMatching(t, "-A "); len(rules) > 0 {
		t.Errorf("ADD without policy or NAT installed rules:\n%s", strings.Join(rules, "\n"))
	}
	e.del(c)
}
