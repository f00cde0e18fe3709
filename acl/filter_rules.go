package acl

import (
	"fmt"
	"net/netip"

	"github.com/zonenet/zonenet/conf"
)

// chainRules is one per-network chain and its rules, in order.
type chainRules struct {
	name  string
	rules []string
}

// renderHook renders a network's chains at one hook: the main chain holds
// the rules' accepts, then the defaults. Rules only allow, so their order
// never changes a verdict; the defaults come last and each is terminal, in
// the order of conf's defaultFor: zone pairs first, then a zone and the
// outside. A rule with an external side goes into a gate chain that first
// returns every address inside a zone, since "outside every zone" has no
// single match without sets. Accepts that differ in one address only are
// merged into set rules (filter_sets.go) while budget allows; a nil budget
// renders plain rules only.
func renderHook(h hook, f Family, network string, p *conf.Policy, budget *setBudget) ([]chainRules, []ipSet) {
	main := chainRules{name: ownerChain(h.prefix, network)}
	if f == IPv6 {
		// Neighbour discovery is the link's plumbing, not a connection:
		// without it no IPv6 flow, allowed or not, gets anywhere.
		for _, typ := range []string{"neighbour-solicitation", "neighbour-advertisement"} {
			main.rules = append(main.rules, jumpLine(main.name, "-p ipv6-icmp -m icmp6 --icmpv6-type "+typ,
				"zonenet "+network+" neighbour discovery", "ACCEPT"))
		}
	}
	// The gateways are the host's own addresses: the host talking to
	// itself through one is not a zone's traffic.
	for _, gf := range []struct {
		sd   side
		flag string
	}{{h.src, "-s"}, {h.dst, "-d"}} {
		if gf.sd != sideZone {
			continue
		}
		for _, z := range p.Zones {
			for _, gw := range z.Gateways {
				if familyOf(gw) == f {
					main.rules = append(main.rules, jumpLine(main.name, gf.flag+" "+netip.PrefixFrom(gw, gw.BitLen()).String(),
						"zonenet "+network+" gateway "+z.Name+" is the host", "RETURN"))
				}
			}
		}
	}
	var abuse *chainRules
	if h.top == ChainForward {
		var lr []string
		lr, abuse = limitRules(f, network, p, main.name)
		main.rules = append(main.rules, lr...)
	}
	var xs, xd chainRules
	if h.xs != "" {
		xs = chainRules{name: ownerChain(h.xs, network)}
		xd = chainRules{name: ownerChain(h.xd, network)}
		for _, s := range zoneSubnets(p, f) {
			xs.rules = append(xs.rules, jumpLine(xs.name, "-s "+s.String(), "zonenet "+network+" not external", "RETURN"))
			xd.rules = append(xd.rules, jumpLine(xd.name, "-d "+s.String(), "zonenet "+network+" not external", "RETURN"))
		}
	}
	var accMain, accXs, accXd []accept
	for i := range p.Rules {
		rule := &p.Rules[i]
		for _, src := range rule.Sources {
			sm, sGate := endpointMatches(p, src, h.src, "-s", f)
			for _, dst := range rule.Destinations {
				dm, dGate := endpointMatches(p, dst, h.dst, "-d", f)
				if sGate && dGate {
					continue // external to external: not zonenet's
				}
				target := &accMain
				switch {
				case sGate:
					target = &accXs
				case dGate:
					target = &accXd
				}
				for _, proto := range rule.Protocols {
					for _, pm := range protoMatches(proto, src.Ports, dst.Ports, f) {
						for _, s := range sm {
							for _, d := range dm {
								*target = append(*target, accept{s: s, d: d, pm: pm, rule: rule.Name})
							}
						}
					}
				}
			}
		}
	}
	var sets []ipSet
	for _, c := range []struct {
		ch  *chainRules
		acc []accept
	}{{&main, accMain}, {&xs, accXs}, {&xd, accXd}} {
		lines, s := renderAccepts(network, f, c.ch.name, c.acc, budget)
		c.ch.rules = append(c.ch.rules, lines...)
		sets = append(sets, s...)
	}
	out := []chainRules{}
	if abuse != nil {
		out = append(out, *abuse)
	}
	if len(accXs) > 0 {
		main.rules = append(main.rules, jumpLine(main.name, "", "zonenet "+network+" rules from external", xs.name))
		out = append(out, xs)
	}
	if len(accXd) > 0 {
		main.rules = append(main.rules, jumpLine(main.name, "", "zonenet "+network+" rules to external", xd.name))
		out = append(out, xd)
	}
	main.rules = append(main.rules, defaults(h, f, network, p, main.name)...)
	// Gates first: the main chain jumps to them.
	return append(out, main), sets
}

func join(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += " "
		}
		out += p
	}
	return out
}

// endpointMatches are the address matches ("-s 10.1.2.0/24", or "" for any
// address) an endpoint selects on one side of a hook, none when it cannot
// match there. gate reports an external endpoint, which needs a gate chain.
func endpointMatches(p *conf.Policy, e conf.Endpoint, sd side, flag string, f Family) (m []string, gate bool) {
	if sd == sideHost {
		if e.Kind == conf.EndpointHost {
			return []string{""}, false
		}
		return nil, false
	}
	switch e.Kind {
	case conf.EndpointZone:
		if z := p.Zone(e.Zone); z != nil {
			for _, s := range z.Subnets {
				if familyOf(s.Addr()) == f {
					m = append(m, flag+" "+s.String())
				}
			}
		}
	case conf.EndpointCIDR, conf.EndpointAddress:
		if familyOf(e.Prefix.Addr()) == f {
			m = append(m, flag+" "+prefixText(e.Prefix))
		}
	case conf.EndpointExternal:
		if sd == sideAny {
			return []string{""}, true
		}
	}
	return m, false
}

// prefixText prints a prefix as iptables-save does: always with a length.
func prefixText(p netip.Prefix) string { return p.Masked().String() }

// protoMatches renders a protocol and the two sides' port ranges as
// matches. An endpoint with ports matches only protocols with ports, so
// "all" with ports is tcp, udp and sctp; icmp with ports is nothing.
func protoMatches(proto conf.Protocol, sports, dports []conf.PortRange, f Family) []string {
	hasPorts := len(sports) > 0 || len(dports) > 0
	var protos []conf.Protocol
	switch {
	case proto == conf.ProtoAll && hasPorts:
		protos = []conf.Protocol{conf.ProtoTCP, conf.ProtoUDP, conf.ProtoSCTP}
	case proto == conf.ProtoAll:
		return []string{""}
	case !proto.HasPorts() && hasPorts:
		return nil
	default:
		protos = []conf.Protocol{proto}
	}
	var out []string
	for _, pr := range protos {
		if pr == conf.ProtoICMP {
			if f == IPv6 {
				out = append(out, "-p ipv6-icmp")
			} else {
				out = append(out, "-p icmp")
			}
			continue
		}
		base := fmt.Sprintf("-p %s -m %s", pr, pr)
		for _, sp := range portList(sports, "--sport") {
			for _, dp := range portList(dports, "--dport") {
				out = append(out, join(base, sp, dp))
			}
		}
	}
	return out
}

func portList(rs []conf.PortRange, flag string) []string {
	if len(rs) == 0 {
		return []string{""}
	}
	out := make([]string, len(rs))
	for i, r := range rs {
		if r.First == r.Last {
			out[i] = fmt.Sprintf("%s %d", flag, r.First)
		} else {
			out[i] = fmt.Sprintf("%s %d:%d", flag, r.First, r.Last)
		}
	}
	return out
}

func verdict(a conf.Action) string {
	if a == conf.Allow {
		return "ACCEPT"
	}
	return "DROP"
}

// defaults are the final, terminal rules of a network's chain at a hook.
func defaults(h hook, f Family, network string, p *conf.Policy, ch string) []string {
	var out []string
	d := p.Defaults
	owner := "zonenet " + network + " default "
	each := func(fn func(z *conf.PolicyZone, s netip.Prefix)) {
		for i := range p.Zones {
			z := &p.Zones[i]
			for _, s := range z.Subnets {
				if familyOf(s.Addr()) == f {
					fn(z, s)
				}
			}
		}
	}
	switch h.top {
	case ChainForward:
		each(func(a *conf.PolicyZone, sa netip.Prefix) {
			each(func(b *conf.PolicyZone, sb netip.Prefix) {
				if a.Name == b.Name {
					out = append(out, jumpLine(ch, "-s "+sa.String()+" -d "+sb.String(), owner+"intraZone "+a.Name, verdict(a.IntraZone)))
				} else {
					out = append(out, jumpLine(ch, "-s "+sa.String()+" -d "+sb.String(), owner+"interZone "+a.Name+" to "+b.Name, verdict(d.InterZone)))
				}
			})
		})
		each(func(z *conf.PolicyZone, s netip.Prefix) {
			out = append(out, jumpLine(ch, "-s "+s.String(), owner+"toExternal "+z.Name, verdict(d.ToExternal)))
		})
		each(func(z *conf.PolicyZone, s netip.Prefix) {
			out = append(out, jumpLine(ch, "-d "+s.String(), owner+"fromExternal "+z.Name, verdict(d.FromExternal)))
		})
	case ChainInput:
		each(func(z *conf.PolicyZone, s netip.Prefix) {
			out = append(out, jumpLine(ch, "-s "+s.String(), owner+"toHost "+z.Name, verdict(d.ToHost)))
		})
	case ChainOutput:
		each(func(z *conf.PolicyZone, s netip.Prefix) {
			out = append(out, jumpLine(ch, "-d "+s.String(), owner+"fromHost "+z.Name, verdict(d.FromHost)))
		})
	}
	return out
}
