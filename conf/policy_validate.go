package conf

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// policyValidator builds a Policy from the raw document, collecting every
// error instead of stopping at the first.
type policyValidator struct {
	p     *Policy
	errs  PolicyErrors
	warns []Warning
	// known holds every zone name a rule may use, including zones whose
	// own entry was invalid, so one bad zone does not flood the rules
	// with "unknown zone".
	known    map[string]bool
	ruleKeys []string
}

func (v *policyValidator) errf(key, value, format string, a ...any) {
	v.errs = append(v.errs, configErr(key, value, format, a...))
}

func (v *policyValidator) warnf(key, format string, a ...any) {
	v.warns = append(v.warns, Warning{Key: key, Msg: fmt.Sprintf(format, a...)})
}

func (v *policyValidator) build(raw *rawPolicy, zones []Zone) {
	if raw.Version != nil && *raw.Version != PolicyVersion {
		v.errf("version", fmt.Sprint(*raw.Version), "is not supported: this zonenet reads version %d", PolicyVersion)
	}
	d := &v.p.Defaults
	rd := raw.Defaults
	d.IntraZone = v.action("defaults.intraZone", rd.IntraZone, Allow)
	d.InterZone = v.action("defaults.interZone", rd.InterZone, Deny)
	d.ToExternal = v.action("defaults.toExternal", rd.ToExternal, Deny)
	d.FromExternal = v.action("defaults.fromExternal", rd.FromExternal, Deny)
	d.ToHost = v.action("defaults.toHost", rd.ToHost, Deny)
	d.FromHost = v.action("defaults.fromHost", rd.FromHost, Allow)
	limits := v.limits("defaults.limits", rd.Limits, Limits{})
	v.zones(raw.Zones, zones, limits)
	names := map[string]int{}
	for i, data := range raw.Rules {
		v.rule(i, data, names)
	}
}

func (v *policyValidator) action(key, s string, def Action) Action {
	switch Action(s) {
	case "":
		return def
	case Allow, Deny:
		return Action(s)
	}
	v.errf(key, s, "must be allow or deny")
	return def
}

func (v *policyValidator) rule(i int, data json.RawMessage, names map[string]int) {
	key := fmt.Sprintf("rules[%d]", i)
	var rr rawRule
	if err := strictUnmarshal(data, &rr); err != nil {
		var n struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(data, &n) == nil && n.Name != "" {
			key = fmt.Sprintf("%s (%s)", key, n.Name)
		}
		v.errf(key, "", "%s", decodeErrText(err))
		return
	}
	switch j, dup := names[rr.Name]; {
	case rr.Name == "":
		v.errf(key+".name", "", "is required: every rule has a name")
	case !validRuleName(rr.Name):
		v.errf(key+".name", rr.Name, "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
	case dup:
		v.errf(key+".name", rr.Name, "is also the name of rules[%d]", j)
	default:
		names[rr.Name] = i
	}
	if rr.Name != "" {
		key = fmt.Sprintf("%s (%s)", key, rr.Name)
	}
	before := len(v.errs)
	r := Rule{Name: rr.Name, Protocols: v.protocols(key+".protocol", &rr.Protocol)}
	r.Sources = v.endpoints(key+".source", &rr.Source, r.Protocols)
	r.Destinations = v.endpoints(key+".destination", &rr.Destination, r.Protocols)
	if len(v.errs) == before {
		v.checkPairs(key, &r)
	}
	v.p.Rules = append(v.p.Rules, r)
	v.ruleKeys = append(v.ruleKeys, key)
}

func (v *policyValidator) protocols(key string, raw *oneOrMany[string]) []Protocol {
	if len(raw.Items) == 0 {
		v.errf(key, "", "is required: tcp, udp, sctp, icmp or all")
		return nil
	}
	var out []Protocol
	for i, s := range raw.Items {
		p := Protocol(strings.ToLower(s))
		k := raw.key(key, i)
		switch {
		case p != ProtoTCP && p != ProtoUDP && p != ProtoSCTP && p != ProtoICMP && p != ProtoAll:
			v.errf(k, s, "must be tcp, udp, sctp, icmp or all")
		case protoIn(out, p):
			v.errf(k, s, "is listed twice")
		case p == ProtoAll && len(raw.Items) > 1:
			v.errf(k, s, "already includes every other protocol: list it alone")
		default:
			out = append(out, p)
		}
	}
	return out
}

func protoIn(list []Protocol, p Protocol) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

func (v *policyValidator) endpoints(key string, raw *oneOrMany[rawEndpoint], protos []Protocol) []Endpoint {
	if len(raw.Items) == 0 {
		v.errf(key, "", "is required: a zone, an address, a CIDR, external or host")
		return nil
	}
	var out []Endpoint
	for i := range raw.Items {
		if e, ok := v.endpoint(raw.key(key, i), &raw.Items[i], protos); ok {
			out = append(out, e)
		}
	}
	return out
}

func (v *policyValidator) endpoint(key string, re *rawEndpoint, protos []Protocol) (Endpoint, bool) {
	var e Endpoint
	selKey, sel := key, re.Short
	kind := EndpointKind("")
	n := 0
	if re.IsShort {
		n, kind = 1, shortKind(re.Short)
	}
	for _, f := range []struct {
		kind EndpointKind
		val  string
		set  bool
	}{
		{EndpointZone, re.Zone, re.Zone != ""}, {EndpointCIDR, re.CIDR, re.CIDR != ""},
		{EndpointAddress, re.Address, re.Address != ""}, {EndpointExternal, "", re.External}, {EndpointHost, "", re.Host},
	} {
		if f.set {
			n++
			kind, sel, selKey = f.kind, f.val, key+"."+string(f.kind)
		}
	}
	if n != 1 {
		v.errf(key, "", "needs exactly one of zone, cidr, address, external: true or host: true (found %d)", n)
		return e, false
	}
	e.Kind = kind
	ok := true
	switch kind {
	case EndpointZone:
		e.Zone = sel
		if !v.known[sel] {
			v.errf(selKey, sel, "is not a zone (zones: %s)", v.zoneNames())
			ok = false
		}
	case EndpointCIDR, EndpointAddress:
		e.Prefix, ok = v.prefix(selKey, sel, kind)
	}
	for i, rp := range re.Ports.Items {
		k := re.Ports.key(key+".ports", i)
		pr, msg := parsePortRange(rp.Text)
		if msg != "" {
			v.errf(k, rp.Text, "%s", msg)
			ok = false
			continue
		}
		for _, q := range e.Ports {
			if q.First <= pr.Last && pr.First <= q.Last {
				v.warnf(k, "overlaps port(s) %s of the same list", q)
			}
		}
		e.Ports = append(e.Ports, pr)
	}
	if len(re.Ports.Items) > 0 {
		for _, p := range protos {
			if !p.HasPorts() {
				v.errf(key+".ports", "", "are set but protocol %s has no ports: ports need tcp, udp or sctp", p)
				ok = false
				break
			}
		}
	}
	return e, ok
}

// shortKind tells what a string endpoint selects. Zone names cannot hold
// '.', ':' or '/', so they never look like addresses.
func shortKind(s string) EndpointKind {
	switch {
	case s == string(EndpointExternal):
		return EndpointExternal
	case s == string(EndpointHost):
		return EndpointHost
	case strings.Contains(s, "/"):
		return EndpointCIDR
	case strings.ContainsAny(s, ".:"):
		return EndpointAddress
	}
	return EndpointZone
}

func (v *policyValidator) prefix(key, s string, kind EndpointKind) (netip.Prefix, bool) {
	var p netip.Prefix
	if kind == EndpointCIDR {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			v.errf(key, s, "is not a CIDR such as 10.0.3.0/28")
			return p, false
		}
		if p.Masked() != p {
			v.errf(key, s, "has host bits set; did you mean %s?", p.Masked())
			return p, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			v.errf(key, s, "is not an IP address")
			return p, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		v.errf(key, s, "is IPv4-mapped; write it as IPv4")
		return p, false
	}
	if kind == EndpointAddress {
		a := p.Addr()
		for _, z := range v.p.Zones {
			for _, gw := range z.Gateways {
				if gw == a {
					v.errf(key, s, "is the gateway of zone %s, which is the host: write host (the rule can never match an address selector)", z.Name)
					return p, false
				}
			}
			for _, sub := range z.Subnets {
				if a.Is4() && (a == sub.Addr() || a == lastAddr(sub)) {
					v.errf(key, s, "is the network or broadcast address of zone %s (%s): no container has it, the rule can never match", z.Name, sub)
					return p, false
				}
			}
		}
	}
	return p, true
}

// checkPairs refuses rules that can never match a flow.
func (v *policyValidator) checkPairs(key string, r *Rule) {
	for _, s := range r.Sources {
		for _, d := range r.Destinations {
			if !v.p.pairManaged(s, d) {
				v.errf(key, "", "can never match: neither source %s nor destination %s is in a zone, and zonenet only sees traffic to or from containers", s, d)
				continue
			}
			if v.p.families(s)&v.p.families(d) == 0 {
				v.errf(key, "", "can never match: source %s and destination %s have no address family in common", s, d)
			}
		}
	}
	for _, list := range [][]Endpoint{r.Sources, r.Destinations} {
		for _, e := range list {
			if e.Kind != EndpointCIDR {
				continue
			}
			if cl := v.p.classes(e); len(cl) > 1 {
				v.warnf(key, "%s spans %s; it matches in each of them", e, classList(cl))
			}
			for _, z := range v.p.Zones {
				if containsPrefix(z.Subnets, e.Prefix) {
					v.warnf(key, "%s is the subnet of zone %s: the zone's name says the same and survives renumbering", e, z.Name)
				}
			}
		}
	}
}
