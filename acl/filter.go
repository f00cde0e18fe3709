package acl

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/zonenet/zonenet/conf"
)

// The filter table's top-level chains, jumped to once, at position 1, from
// the built-in chain of the same hook. Each starts with the conntrack rule
// that lets replies of allowed connections through: the policy judges new
// connections only.
const (
	ChainForward = "ZONENET-FORWARD" // routed and bridged: zone <-> zone, zone <-> external
	ChainInput   = "ZONENET-INPUT"   // zone -> the host
	ChainOutput  = "ZONENET-OUTPUT"  // the host -> zone
)

// hook is one place of the filter table where a network's policy is
// judged, and which classes each side of a flow can be there.
type hook struct {
	builtin, top, prefix string
	src, dst             side
	// entry are the address flags ("-s", "-d") of the top-level chain's
	// jumps to the network's chain, one jump per zone subnet and flag.
	entry []string
	// xs, xd name the gate chains of rules whose source (destination) is
	// external; "" when the side cannot be external here.
	xs, xd string
}

// side says which classes can sit on one side of a flow at a hook.
type side int

const (
	sideAny  side = iota // a zone or external (routed traffic)
	sideZone             // a zone only: the entry jumps guarantee it
	sideHost             // the host itself
)

var hooks = []hook{
	{builtin: "FORWARD", top: ChainForward, prefix: "ZN-FWD-", src: sideAny, dst: sideAny,
		entry: []string{"-s", "-d"}, xs: "ZN-FXS-", xd: "ZN-FXD-"},
	{builtin: "INPUT", top: ChainInput, prefix: "ZN-IN-", src: sideZone, dst: sideHost, entry: []string{"-s"}},
	{builtin: "OUTPUT", top: ChainOutput, prefix: "ZN-OUT-", src: sideHost, dst: sideZone, entry: []string{"-d"}},
}

// establishedLine is the first rule of every top-level chain, as
// iptables-save prints it.
func establishedLine(top string) string {
	return jumpLine(top, "-m conntrack --ctstate RELATED,ESTABLISHED", "zonenet replies of allowed connections", "ACCEPT")
}

// networkChains are every per-network chain name of the filter table.
func networkChains(network string) []string {
	out := []string{abuseChain(network)}
	for _, h := range hooks {
		out = append(out, ownerChain(h.prefix, network))
		for _, g := range []string{h.xs, h.xd} {
			if g != "" {
				out = append(out, ownerChain(g, network))
			}
		}
	}
	return out
}

// ApplyFilter installs (or replaces) a network's policy in the filter
// table: for each address family one save and one iptables-restore
// --noflush, so the old rules are replaced by the new ones in a single
// netfilter commit. A family none of the policy's zones uses has the
// network's rules removed instead.
func ApplyFilter(r Runner, network string, p *conf.Policy) error {
	return locked(r, func() error {
		for _, f := range []Family{IPv4, IPv6} {
			var err error
			if len(zoneSubnets(p, f)) == 0 {
				err = removeFilterLocked(r, f, network)
			} else {
				err = applyFilterLocked(r, f, network, p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func applyFilterLocked(r Runner, f Family, network string, p *conf.Policy) error {
	saved, err := r.Save(f, "filter")
	if err != nil {
		return err
	}
	rs := parseSave(saved)
	sets := setsOf(r)
	body, want := renderFilter(rs, f, network, p, sets != nil)
	return withSets(sets, f, network, rs, want, func() error { return r.Restore(f, "filter", body) })
}

// renderFilter is the restore body that brings the table rs to the
// network's policy, and the sets it matches against (none unless
// useSets). Only the top-level chains' state comes from rs; the network's
// chains are rendered from p alone.
func renderFilter(rs ruleSet, f Family, network string, p *conf.Policy, useSets bool) ([]byte, []ipSet) {
	var b bytes.Buffer
	var budget *setBudget
	if useSets {
		budget = &setBudget{left: maxSetsPerFamily}
	}
	var sets []ipSet
	for _, h := range hooks {
		if !rs.chains[h.top] {
			fmt.Fprintf(&b, ":%s - [0:0]\n", h.top)
			b.WriteString(establishedLine(h.top) + "\n")
		} else if !rs.rules[establishedLine(h.top)] {
			b.WriteString(insertFirst(establishedLine(h.top)) + "\n")
		}
		if !rs.hasJump(h.builtin, h.top) {
			b.WriteString(insertFirst(jumpLine(h.builtin, "", "zonenet policy", h.top)) + "\n")
		}
	}
	used := map[string]bool{}
	for _, h := range hooks {
		chains, hs := renderHook(h, f, network, p, budget)
		sets = append(sets, hs...)
		for _, c := range chains {
			used[c.name] = true
			// Declaring an existing chain under --noflush flushes it: the
			// network's chain is rebuilt whole in the same commit.
			fmt.Fprintf(&b, ":%s - [0:0]\n", c.name)
			for _, l := range c.rules {
				b.WriteString(l + "\n")
			}
		}
	}
	for _, h := range hooks {
		ch := ownerChain(h.prefix, network)
		want := map[string]bool{}
		var wantList []string
		for _, s := range zoneSubnets(p, f) {
			for _, flag := range h.entry {
				l := jumpLine(h.top, flag+" "+s.String(), "zonenet "+network, ch)
				if !want[l] {
					want[l] = true
					wantList = append(wantList, l)
				}
			}
		}
		for _, l := range rs.sortedRules() {
			if strings.HasPrefix(l, "-A "+h.top+" ") && strings.HasSuffix(l, " -j "+ch) && !want[l] {
				b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
			}
		}
		for _, l := range wantList {
			if !rs.rules[l] {
				b.WriteString(l + "\n")
			}
		}
	}
	// Gate chains the policy no longer needs: nothing jumps to them any
	// more once their owner chain is rebuilt above.
	for _, c := range networkChains(network) {
		if rs.chains[c] && !used[c] {
			fmt.Fprintf(&b, "-F %s\n-X %s\n", c, c)
		}
	}
	return b.Bytes(), sets
}

// insertFirst turns an "-A CHAIN ..." line into "-I CHAIN 1 ...".
func insertFirst(l string) string {
	chain, rest, _ := strings.Cut(strings.TrimPrefix(l, "-A "), " ")
	return "-I " + chain + " 1 " + rest
}

// zoneSubnets are the policy's zone subnets of one family, in zone order.
func zoneSubnets(p *conf.Policy, f Family) []netip.Prefix {
	var out []netip.Prefix
	for _, z := range p.Zones {
		for _, s := range z.Subnets {
			if familyOf(s.Addr()) == f {
				out = append(out, s)
			}
		}
	}
	return out
}

// RemoveFilter removes a network's filter chains and the jumps to them,
// and the top-level chains when no network uses them any more. Missing
// pieces are fine.
func RemoveFilter(r Runner, network string) error {
	return locked(r, func() error {
		for _, f := range []Family{IPv4, IPv6} {
			if err := removeFilterLocked(r, f, network); err != nil {
				return err
			}
		}
		return nil
	})
}

func removeFilterLocked(r Runner, f Family, network string) error {
	saved, err := r.Save(f, "filter")
	if err != nil {
		return err
	}
	rs := parseSave(saved)
	mine := map[string]bool{}
	for _, c := range networkChains(network) {
		mine[c] = true
	}
	// Two restores: the first takes every jump and rule away in one
	// commit; the second deletes the chains, now empty and unreferenced.
	// iptables-nft refuses to delete a chain whose last jump is deleted
	// in the same restore.
	var b, del bytes.Buffer
	for _, h := range hooks {
		others := false // rules of the top chain that stay
		for _, l := range rs.sortedRules() {
			if !strings.HasPrefix(l, "-A "+h.top+" ") || l == establishedLine(h.top) {
				continue
			}
			if _, after, ok := strings.Cut(l, " -j "); ok && mine[after] {
				b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
				continue
			}
			others = true
		}
		if others || !rs.chains[h.top] {
			continue
		}
		for _, l := range rs.sortedRules() {
			if strings.HasPrefix(l, "-A "+h.builtin+" ") && strings.HasSuffix(l, " -j "+h.top) {
				b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
			}
		}
		fmt.Fprintf(&b, "-F %s\n", h.top)
		fmt.Fprintf(&del, "-X %s\n", h.top)
	}
	for _, c := range networkChains(network) {
		if rs.chains[c] {
			fmt.Fprintf(&b, "-F %s\n", c)
			fmt.Fprintf(&del, "-X %s\n", c)
		}
	}
	if b.Len() > 0 {
		if err := r.Restore(f, "filter", b.Bytes()); err != nil {
			return err
		}
	}
	if del.Len() > 0 {
		if err := r.Restore(f, "filter", del.Bytes()); err != nil {
			return err
		}
	}
	return dropNetworkSets(r, f, network, rs)
}
