package acl_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
	"github.com/zonenet/zonenet/conf"
)

// The rendered table, walked by a small interpreter of the matches the
// renderer uses, must give every flow the verdict of Policy.Allows. This
// covers, without root, what the integration test cannot cheaply probe:
// UDP, SCTP, ICMP, protocol "all", CIDRs across zones, port ranges.

const richPolicy = `
version: 1
defaults: {intraZone: deny, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: deny}
zones:
  - name: frontend
    intraZone: allow
    limits:
      maxConnections: 100
      rateLimit: {newConnectionsPerMinute: 60, action: drop, blockFor: 1m}
  - name: mgmt
    limits:
      rateLimit: {newConnectionsPerMinute: 600, action: log}
rules:
  - name: wide-cidr
    source: 10.0.0.0/16
    destination: {zone: mgmt, ports: [1000-2000, 22]}
    protocol: [tcp, udp]
  - name: ping
    source: frontend
    destination: [backend, host]
    protocol: icmp
  - name: ping-gw
    source: mgmt
    destination: host
    protocol: icmp
  - name: ping-in
    source: external
    destination: backend
    protocol: icmp
  - name: host-half
    source: host
    destination: {cidr: 10.0.2.0/25, ports: [80]}
    protocol: [tcp, sctp]
  - name: out-dns
    source: [backend, mgmt]
    destination: {external: true, ports: [53]}
    protocol: udp
  - name: in-any
    source: 192.0.2.0/24
    destination: frontend
    protocol: all
  - name: v6-mgmt
    source: fd00:0:3::/64
    destination: {external: true, ports: [443]}
    protocol: tcp
  - name: sport
    source: {zone: frontend, ports: [5353]}
    destination: {external: true}
    protocol: udp
`

// evalTable is a fake's tables and a snapshot of its sets.
type evalTable struct {
	f      *acltest.Fake
	sets   map[string][]netip.Prefix
	rules  map[string][]string // "4 CHAIN" → rules, read once
	fields map[string][]string // rule → its words, split once
}

func newEvalTable(f *acltest.Fake) *evalTable {
	e := &evalTable{f: f, sets: map[string][]netip.Prefix{}, rules: map[string][]string{}, fields: map[string][]string{}}
	for _, n := range f.SetNames() {
		e.sets[n], _ = f.SetMembers(n)
	}
	return e
}

// verdict walks the hook a flow takes through the fake's table.
func verdict(t *testing.T, e *evalTable, p *conf.Policy, fl conf.Flow) bool {
	t.Helper()
	fam := acl.IPv4
	if fl.Dst.Is6() {
		fam = acl.IPv6
	}
	gw := func(a netip.Addr) bool {
		for _, z := range p.Zones {
			for _, g := range z.Gateways {
				if g == a {
					return true
				}
			}
		}
		return false
	}
	chain := "FORWARD"
	switch {
	case fl.SrcHost || gw(fl.Src):
		chain = "OUTPUT"
	case fl.DstHost || gw(fl.Dst):
		chain = "INPUT"
	}
	v, done := walk(t, e, fam, chain, fl, 0)
	return !done || v // built-in chains accept by default
}

func walk(t *testing.T, e *evalTable, fam acl.Family, chain string, fl conf.Flow, depth int) (verdict, done bool) {
	if depth > 10 {
		t.Fatalf("jump loop at %s", chain)
	}
	key := fmt.Sprint(fam, " ", chain)
	rules, ok := e.rules[key]
	if !ok {
		if rules, ok = e.f.Rules(fam, "filter", chain); !ok {
			t.Fatalf("jump to missing chain %s", chain)
		}
		e.rules[key] = rules
	}
	for _, r := range rules {
		target, match := matchRule(t, e, r, fl)
		if !match {
			continue
		}
		switch target {
		case "ACCEPT":
			return true, true
		case "DROP":
			return false, true
		case "RETURN":
			return false, false
		}
		if v, done := walk(t, e, fam, target, fl, depth+1); done {
			return v, true
		}
	}
	return false, false
}

// matchRule reports whether a new connection's first packet matches a
// rule, and the rule's target.
func matchRule(t *testing.T, e *evalTable, rule string, fl conf.Flow) (string, bool) {
	fields, ok := e.fields[rule]
	if !ok {
		fields = strings.Fields(rule)[2:]
		e.fields[rule] = fields
	}
	match := true
	target := ""
	for i := 0; i < len(fields); i++ {
		if !match {
			return "", false // the rest cannot change that
		}
		arg := func() string { i++; return fields[i] }
		switch fields[i] {
		case "-s", "-d":
			flag := fields[i]
			pfx := netip.MustParsePrefix(arg())
			a := fl.Src
			if flag == "-d" {
				a = fl.Dst
			}
			match = match && pfx.Contains(a)
		case "-p":
			p := arg()
			if p == "ipv6-icmp" {
				p = "icmp"
			}
			match = match && p == string(fl.Proto)
		case "-m":
			arg()
		case "--sport", "--dport":
			flag := fields[i]
			lo, hi, _ := strings.Cut(arg(), ":")
			if hi == "" {
				hi = lo
			}
			l, _ := strconv.Atoi(lo)
			h, _ := strconv.Atoi(hi)
			port := int(fl.SrcPort)
			if flag == "--dport" {
				port = int(fl.DstPort)
			}
			match = match && l <= port && port <= h
		case "--match-set":
			name, dir := arg(), arg()
			members, ok := e.sets[name]
			if !ok {
				t.Fatalf("rule names missing set %s: %s", name, rule)
			}
			a := fl.Src
			switch dir {
			case "src":
			case "dst":
				a = fl.Dst
			default:
				t.Fatalf("set direction %q in %s", dir, rule)
			}
			match = match && slices.ContainsFunc(members, func(p netip.Prefix) bool { return p.Contains(a) })
		case "--ctstate", "--icmpv6-type":
			arg()
			match = false // a new connection, never neighbour discovery
		case "--connlimit-above", "--hashlimit-above", "--rcheck":
			// One new connection is never over a limit, nor from a
			// blocked source, in this walk.
			if fields[i] != "--rcheck" {
				arg()
			}
			match = false
		case "--connlimit-mask", "--hashlimit-burst", "--hashlimit-mode", "--hashlimit-name",
			"--hashlimit-htable-expire", "--seconds", "--name", "--mask":
			arg()
		case "--connlimit-saddr", "--connlimit-daddr", "--rsource":
		case "--comment":
			for i++; !strings.HasSuffix(fields[i], `"`) || fields[i] == `"`; i++ {
			}
		case "-j":
			target = arg()
			i = len(fields) // target options (REJECT, NFLOG) do not match

		default:
			t.Fatalf("interpreter does not know %q in %s", fields[i], rule)
		}
	}
	return target, match
}

func TestFilterMatchesTruthFunction(t *testing.T) {
	addrs := []string{
		"10.0.1.5", "10.0.1.6", "10.0.1.1", "10.0.2.5", "10.0.2.200", "10.0.2.1",
		"10.0.3.10", "10.0.3.11", "10.0.3.1", "10.0.9.9", "8.8.8.8", "192.0.2.7",
		"fd00:0:3::5", "fd00:0:3::6", "fd00:0:3::1", "2001:db8::1",
	}
	ports := []uint16{22, 53, 80, 443, 999, 1000, 1500, 2000, 3306, 8080}
	for _, c := range []struct {
		name      string
		doc       string
		addrs     []string
		ports     []uint16
		wantSets  bool
		plainOnly bool // render without sets, as on a node without ipset
	}{
		{name: "reference", doc: testPolicy},
		{name: "rich", doc: richPolicy},
		{name: "defaults", doc: "version: 1\ndefaults: {intraZone: deny, interZone: allow, toExternal: allow, fromExternal: allow, toHost: allow, fromHost: allow}\n"},
		// Long policies are slow to judge: a few addresses of each class
		// besides the lists' own, and the lists' ports.
		{name: "lists", doc: listPolicy(), addrs: listPolicyAddrs, ports: []uint16{22, 53, 443, 5432, 8080}, wantSets: true},
		{name: "lists-plain", doc: listPolicy(), addrs: listPolicyAddrs, ports: []uint16{443, 5432}, plainOnly: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := parsePolicy(t, c.doc)
			f := &acltest.Fake{}
			var r acl.Runner = f
			if c.plainOnly {
				r = plainRunner{f}
			}
			if err := acl.ApplyFilter(r, "prod", p); err != nil {
				t.Fatal(err)
			}
			if got := len(f.SetNames()) > 0; got != c.wantSets {
				t.Fatalf("sets %q, want some: %v", f.SetNames(), c.wantSets)
			}
			if c.addrs != nil {
				few := []string{"10.0.1.5", "10.0.2.5", "10.0.2.1", "10.0.3.10", "8.8.8.8", "fd00:0:3::5", "fd00:0:3::1"}
				checkTruth(t, newEvalTable(f), p, append(few, c.addrs...), c.ports)
				return
			}
			checkTruth(t, newEvalTable(f), p, append(slices.Clone(addrs), c.addrs...), append(slices.Clone(ports), c.ports...))
		})
	}
}

// plainRunner hides the fake's sets: the renderer then makes plain rules.
type plainRunner struct{ acl.Runner }

// checkTruth compares the table's verdict with the policy's for every
// flow between addrs (and the host) on every protocol and port.
func checkTruth(t *testing.T, e *evalTable, p *conf.Policy, addrs []string, ports []uint16) {
	t.Helper()
	protos := []conf.Protocol{conf.ProtoTCP, conf.ProtoUDP, conf.ProtoSCTP, conf.ProtoICMP}
	n, bad, allowed := 0, 0, 0
	for _, s := range addrs {
		for _, d := range addrs {
			src, dst := netip.MustParseAddr(s), netip.MustParseAddr(d)
			if src == dst || src.Is4() != dst.Is4() {
				continue
			}
			for _, hosts := range [][2]bool{{false, false}, {true, false}, {false, true}} {
				for _, proto := range protos {
					for _, sport := range []uint16{5353, 40000} {
						for _, dport := range ports {
							fl := conf.Flow{Src: src, Dst: dst, SrcHost: hosts[0], DstHost: hosts[1], Proto: proto, SrcPort: sport, DstPort: dport}
							if !proto.HasPorts() {
								fl.SrcPort, fl.DstPort = 0, 0
							}
							if hosts[0] && containerAddr(p, src) || hosts[1] && containerAddr(p, dst) {
								continue // the node never owns a container's address
							}
							want, by := p.Allows(fl)
							n++
							if want && by != conf.DecidedUnmanaged {
								allowed++
							}
							if got := verdict(t, e, p, fl); got != want && bad < 20 {
								bad++
								t.Errorf("%s: table says %v, policy says %v (%s)", fmtFlow(fl), got, want, by)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d flows (%d allowed by zonenet), %d mismatches", n, allowed, bad)
}

func fmtFlow(fl conf.Flow) string {
	s := fmt.Sprintf("%s %s:%d -> %s:%d", fl.Proto, fl.Src, fl.SrcPort, fl.Dst, fl.DstPort)
	if fl.SrcHost {
		s += " (from host)"
	}
	if fl.DstHost {
		s += " (to host)"
	}
	return s
}

// containerAddr reports whether a is inside a zone and not its gateway.
func containerAddr(p *conf.Policy, a netip.Addr) bool {
	for _, z := range p.Zones {
		for _, g := range z.Gateways {
			if g == a {
				return false
			}
		}
		for _, s := range z.Subnets {
			if s.Contains(a) {
				return true
			}
		}
	}
	return false
}
