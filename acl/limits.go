package acl

// Per-zone limits of a policy, judged on new connections only (replies and
// established flows are accepted before a network's chain is entered):
//
//   - maxConnections: connlimit per container address, both ways: a
//     container can neither open nor receive more than the limit at once.
//     TCP beyond it gets a reset, anything else is dropped.
//   - rateLimit: hashlimit per source address of new connections into the
//     zone. A source above the rate jumps to ZN-ABU-<net>, which logs the
//     connection to NFLOG group AbuseNFLOGGroup (counted by the rule's
//     counters) and, with action drop, records the source in an xt_recent
//     list; while the source stays in that list (blockFor after its last
//     offending connection) its new connections into the zone are dropped.
//     xt_recent keeps the timers in the kernel: no daemon is needed to
//     unblock.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/zonenet/zonenet/conf"
)

// AbuseNFLOGGroup is the NFLOG group sources over a zone's rate limit are
// logged to.
const AbuseNFLOGGroup = 100

// abuseChain is the network's chain of sources over a rate limit.
func abuseChain(network string) string { return ownerChain("ZN-ABU-", network) }

// shortName is a kernel object name of at most n characters: a prefix and
// a hash of the owner. hashlimit names have 15 usable characters.
func shortName(prefix string, n int, fields ...string) string {
	h := sha256.New()
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return prefix + hex.EncodeToString(h.Sum(nil))[:n-len(prefix)]
}

// BlockListName is the xt_recent list (/proc/net/xt_recent/NAME) of a zone
// subnet's blocked sources.
func BlockListName(network, zone string, f Family) string {
	return shortName(fmt.Sprintf("zonenet-blk%d-", f), 28, network, zone)
}

func hashlimitName(network, zone string, f Family) string {
	return shortName(fmt.Sprintf("zn%d", f), 15, network, zone)
}

// limitRules are the first rules of a network's FORWARD chain, and the
// abuse chain when a zone has a rate limit.
func limitRules(f Family, network string, p *conf.Policy, ch string) (rules []string, abuse *chainRules) {
	ab := chainRules{name: abuseChain(network)}
	for i := range p.Zones {
		z := &p.Zones[i]
		for _, s := range z.Subnets {
			if familyOf(s.Addr()) != f {
				continue
			}
			r, a := zoneLimits(f, network, z, s, ch, ab.name)
			rules = append(rules, r...)
			ab.rules = append(ab.rules, a...)
		}
	}
	if len(ab.rules) == 0 {
		return rules, nil
	}
	return rules, &ab
}

func zoneLimits(f Family, network string, z *conf.PolicyZone, s netip.Prefix, ch, abuse string) (rules, ab []string) {
	owner := "zonenet " + network + " zone " + z.Name
	sub := s.Masked().String()
	rl := z.Limits.RateLimit
	if rl.NewConnectionsPerMinute > 0 {
		list := BlockListName(network, z.Name, f)
		if rl.Action == conf.RateDrop {
			rules = append(rules, jumpLine(ch, fmt.Sprintf("-d %s -m recent --rcheck --seconds %d --name %s --mask %s --rsource",
				sub, int(rl.BlockFor.Seconds()), list, fullMask(f)), owner+" blocked source", "DROP"))
		}
		burst := min(rl.NewConnectionsPerMinute, 10000)
		rules = append(rules, jumpLine(ch, fmt.Sprintf("-d %s -m hashlimit --hashlimit-above %d/min --hashlimit-burst %d --hashlimit-mode srcip --hashlimit-name %s --hashlimit-htable-expire 120000",
			sub, rl.NewConnectionsPerMinute, burst, hashlimitName(network, z.Name, f)), owner+" rateLimit", abuse))
		ab = append(ab, jumpLine(abuse, "-d "+sub, owner+" source over rateLimit",
			fmt.Sprintf("NFLOG --nflog-prefix %q --nflog-group %d", "zonenet abuse "+z.Name, AbuseNFLOGGroup)))
		if rl.Action == conf.RateDrop {
			ab = append(ab, jumpLine(abuse, fmt.Sprintf("-d %s -m recent --set --name %s --mask %s --rsource", sub, list, fullMask(f)),
				owner+" block source", "DROP"))
		} else {
			ab = append(ab, jumpLine(abuse, "-d "+sub, owner+" log only", "RETURN"))
		}
	}
	if m := z.Limits.MaxConnections; m > 0 {
		bits := 32
		if f == IPv6 {
			bits = 128
		}
		for _, side := range []struct{ flag, dir string }{{"-s", "saddr"}, {"-d", "daddr"}} {
			match := fmt.Sprintf("-m connlimit --connlimit-above %d --connlimit-mask %d --connlimit-%s", m, bits, side.dir)
			at := side.flag + " " + sub
			rules = append(rules,
				jumpLine(ch, at+" -p tcp "+match, owner+" maxConnections", "REJECT --reject-with tcp-reset"),
				jumpLine(ch, at+" "+match, owner+" maxConnections", "DROP"))
		}
	}
	return rules, ab
}

func fullMask(f Family) string {
	if f == IPv6 {
		return "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	}
	return "255.255.255.255"
}
