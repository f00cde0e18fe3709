package conf

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

func (v *policyValidator) zones(raws []json.RawMessage, netZones []Zone, limits Limits) {
	v.known = map[string]bool{}
	standalone := netZones == nil
	for _, z := range netZones {
		if z.Name == string(EndpointExternal) || z.Name == string(EndpointHost) {
			v.errf("zones", z.Name, "is a reserved word in policies: rename the network's zone")
		}
		pz := PolicyZone{Name: z.Name, Subnets: z.Prefixes(), IntraZone: v.p.Defaults.IntraZone, Limits: limits}
		for _, gw := range []netip.Addr{z.Gateway, z.Gateway6} {
			if gw.IsValid() {
				pz.Gateways = append(pz.Gateways, gw)
			}
		}
		v.p.Zones = append(v.p.Zones, pz)
		v.known[z.Name] = true
	}
	seen := map[string]int{}
	for i, data := range raws {
		key := fmt.Sprintf("zones[%d]", i)
		var rz rawPolicyZone
		if err := strictUnmarshal(data, &rz); err != nil {
			v.errf(key, "", "%s", decodeErrText(err))
			continue
		}
		if !validZoneName(rz.Name) || rz.Name == string(EndpointExternal) || rz.Name == string(EndpointHost) {
			v.errf(key+".name", rz.Name, "must be a zone name (1-32 lower-case letters, digits, '-' or '_'; not external or host)")
			continue
		}
		if j, dup := seen[rz.Name]; dup {
			v.errf(key+".name", rz.Name, "is also zones[%d]", j)
			continue
		}
		seen[rz.Name] = i
		key = fmt.Sprintf("%s (%s)", key, rz.Name)
		if standalone {
			v.known[rz.Name] = true
			v.p.Zones = append(v.p.Zones, PolicyZone{Name: rz.Name})
		}
		pz := v.p.Zone(rz.Name)
		if pz == nil {
			v.errf(key+".name", rz.Name, "is not a zone of the network (zones: %s)", v.zoneNames())
			continue
		}
		v.zoneSubnets(key, &rz, pz, standalone)
		pz.IntraZone = v.action(key+".intraZone", rz.IntraZone, v.p.Defaults.IntraZone)
		pz.Limits = v.limits(key+".limits", rz.Limits, limits)
	}
}

// zoneSubnets sets a standalone zone's subnets, or checks that a restated
// subnet is the network's.
func (v *policyValidator) zoneSubnets(key string, rz *rawPolicyZone, pz *PolicyZone, standalone bool) {
	for _, f := range []struct {
		key, val string
		want6    bool
	}{{key + ".subnet", rz.Subnet, false}, {key + ".subnet6", rz.Subnet6, true}} {
		if f.val == "" {
			continue
		}
		p, err := parseSubnet(f.key, f.val, f.want6)
		if err != nil {
			v.errs = append(v.errs, err.(*Error))
			continue
		}
		if !standalone {
			if !containsPrefix(pz.Subnets, p) {
				v.errf(f.key, f.val, "does not match the network's zone %s (%s)", pz.Name, prefixList(pz.Subnets))
			}
			continue
		}
		for _, o := range v.p.Zones {
			for _, q := range o.Subnets {
				if q.Overlaps(p) {
					v.errf(f.key, f.val, "overlaps %s of zone %s", q, o.Name)
				}
			}
		}
		pz.Subnets = append(pz.Subnets, p)
		pz.Gateways = append(pz.Gateways, p.Addr().Next())
	}
	if standalone && len(pz.Subnets) == 0 && rz.Subnet == "" && rz.Subnet6 == "" {
		v.errf(key+".subnet", "", "is required when the policy is checked without the network's configuration (zonenetctl policy check --zones-from CONFLIST)")
	}
}

func containsPrefix(list []netip.Prefix, p netip.Prefix) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

func prefixList(list []netip.Prefix) string {
	s := make([]string, len(list))
	for i, p := range list {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func (v *policyValidator) zoneNames() string {
	n := make([]string, 0, len(v.p.Zones))
	for _, z := range v.p.Zones {
		n = append(n, z.Name)
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// limits overlays the keys set in rl on base: a zone inherits what it does
// not say from defaults.limits.
func (v *policyValidator) limits(key string, rl *rawLimits, base Limits) Limits {
	l := base
	if rl == nil {
		return l
	}
	if rl.MaxConnections != nil {
		n := *rl.MaxConnections
		if n < 0 || n > MaxConnectionsLimit {
			v.errf(key+".maxConnections", fmt.Sprint(n), "must be between 1 and %d (or 0 for no limit)", MaxConnectionsLimit)
		}
		l.MaxConnections = n
	}
	if rl.Bandwidth != nil {
		bps, msg := parseBandwidth(rl.Bandwidth.Text)
		if msg != "" {
			v.errf(key+".bandwidth", rl.Bandwidth.Text, "%s", msg)
		}
		l.Bandwidth = bps
	}
	if r := rl.RateLimit; r != nil {
		k := key + ".rateLimit"
		l.RateLimit = RateLimit{NewConnectionsPerMinute: r.NewConnectionsPerMinute, Action: RateAction(r.Action)}
		if r.NewConnectionsPerMinute < 0 || r.NewConnectionsPerMinute > MaxConnectionsLimit {
			v.errf(k+".newConnectionsPerMinute", fmt.Sprint(r.NewConnectionsPerMinute), "must be between 1 and %d (or 0 for off)", MaxConnectionsLimit)
		}
		switch l.RateLimit.Action {
		case "":
			l.RateLimit.Action = RateLog
		case RateLog, RateDrop:
		default:
			v.errf(k+".action", r.Action, "must be log or drop")
		}
		switch {
		case r.NewConnectionsPerMinute == 0:
			l.RateLimit = RateLimit{}
		case l.RateLimit.Action == RateDrop && r.BlockFor == "":
			l.RateLimit.BlockFor = DefaultBlockFor
		case l.RateLimit.Action == RateDrop:
			d, err := time.ParseDuration(r.BlockFor)
			if err != nil || d < time.Second || d > MaxBlockFor {
				v.errf(k+".blockFor", r.BlockFor, "must be a duration between 1s and %s (e.g. 10m)", MaxBlockFor)
			}
			l.RateLimit.BlockFor = d
		case r.BlockFor != "":
			v.warnf(k+".blockFor", "is ignored with action log: sources are only logged and counted")
		}
	}
	return l
}
