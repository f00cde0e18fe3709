package acl_test

import (
	"fmt"
	"net/netip"
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

// verdict walks the hook a flow takes through the fake's table.
func verdict(t *testing.T, f *acltest.Fake, p *conf.Policy, fl conf.Flow) bool {
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
	v, done := walk(t, f, fam, chain, fl, 0)
	return !done || v // built-in chains accept by default
}

func walk(t *testing.T, f *acltest.Fake, fam acl.Family, chain string, fl conf.Flow, depth int) (verdict, done bool) {
	if depth > 10 {
		t.Fatalf("jump loop at %s", chain)
	}
	rules, ok := f.Rules(fam, "filter", chain)
	if !ok {
		t.Fatalf("jump to missing chain %s", chain)
	}
	for _, r := range rules {
		target, match := matchRule(t, r, fl)
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
		if v, done := walk(t, f, fam, target, fl, depth+1); done {
			return v, true
		}
	}
	return false, false
}

// matchRule reports whether a new connection's first packet matches a
// rule, and the rule's target.
func matchRule(t *testing.T, rule string, fl conf.Flow) (string, bool) {
	fields := strings.Fields(rule)[2:]
	match := true
	target := ""
	for i := 0; i < len(fields); i++ {
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
	protos := []conf.Protocol{conf.ProtoTCP, conf.ProtoUDP, conf.ProtoSCTP, conf.ProtoICMP}
	ports := []uint16{22, 53, 80, 443, 999, 1000, 1500, 2000, 3306, 8080}
	for _, doc := range []string{testPolicy, richPolicy,
		"version: 1\ndefaults: {intraZone: deny, interZone: allow, toExternal: allow, fromExternal: allow, toHost: allow, fromHost: allow}\n"} {
		p := parsePolicy(t, doc)
		f := &acltest.Fake{}
		if err := acl.ApplyFilter(f, "prod", p); err != nil {
			t.Fatal(err)
		}
		n, bad := 0, 0
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
								if got := verdict(t, f, p, fl); got != want && bad < 20 {
									bad++
									t.Errorf("%s: table says %v, policy says %v (%s)", fmtFlow(fl), got, want, by)
								}
							}
						}
					}
				}
			}
		}
		t.Logf("%d flows, %d mismatches", n, bad)
	}
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
