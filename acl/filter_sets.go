package acl

// Address lists as ipsets. A policy with thousands of allow rules that
// differ only in one address (every source allowed to backend tcp/5432)
// would otherwise become thousands of linear rules that each new
// connection walks. Accepts of one chain that share every match but the
// source address (or but the destination address) are merged, from
// MinSetSize distinct addresses on, into one rule matching a hash:net set:
// one hash lookup per packet instead of one rule per address. Smaller
// groups stay plain rules, so small policies read as they always did.
//
// Each set costs one of the 256 sets a network namespace may hold
// (CONFIG_IP_SET_MAX), shared with everything else on the node: sets are
// made per (chain, shared matches), never per rule, and a network uses at
// most maxSetsPerFamily of them per family; the rest stay plain rules.

import (
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// MinSetSize is the number of distinct addresses from which a list of
// accepts becomes one set rule.
const MinSetSize = 8

// maxSetsPerFamily bounds the sets of one network and family, so a few
// large policies cannot exhaust the namespace's sets.
const maxSetsPerFamily = 32

// ipSet is one hash:net set a rendered policy matches against.
type ipSet struct {
	name    string
	family  Family
	members []netip.Prefix // sorted, distinct, masked
}

// accept is one allow rule before merging: its source and destination
// address matches ("-s 10.0.0.1/32", or "" for any), its protocol and port
// matches, and the policy rule it comes from.
type accept struct {
	s, d, pm string
	rule     string
}

// setGroup is a list of accepts that one set rule replaces.
type setGroup struct {
	dir     string // "src" or "dst"
	shared  string // the matches every member has in common
	rules   []string
	members []netip.Prefix
	first   int // index of the first accept of the group
	set     *ipSet
}

// setBudget counts the sets a network may still make in one family.
type setBudget struct{ left int }

// renderAccepts turns a chain's accepts into rule lines, merging address
// lists into sets when budget allows (nil: no sets at all).
func renderAccepts(network string, f Family, chain string, acc []accept, budget *setBudget) ([]string, []ipSet) {
	groupOf := make([]*setGroup, len(acc))
	if budget != nil {
		pickGroups(network, f, chain, acc, groupOf, "src", budget)
		pickGroups(network, f, chain, acc, groupOf, "dst", budget)
	}
	var lines []string
	var sets []ipSet
	owner := "zonenet " + network + " rule "
	for i, a := range acc {
		g := groupOf[i]
		switch {
		case g == nil:
			lines = append(lines, jumpLine(chain, join(a.s, a.d, a.pm), owner+a.rule, "ACCEPT"))
		case g.first == i:
			c := owner + g.rules[0]
			if len(g.rules) > 1 {
				c += " and " + strconv.Itoa(len(g.rules)-1) + " more"
			}
			c += " (" + strconv.Itoa(len(g.members)) + " addresses in set " + g.set.name + ")"
			lines = append(lines, jumpLine(chain, join(g.shared, "-m set --match-set "+g.set.name+" "+g.dir), c, "ACCEPT"))
			sets = append(sets, *g.set)
		}
	}
	return lines, sets
}

// pickGroups finds the accepts not yet in a group that differ only in
// their dir address, and makes a group of each list with at least
// MinSetSize distinct addresses, largest lists first while the budget
// lasts.
func pickGroups(network string, f Family, chain string, acc []accept, groupOf []*setGroup, dir string, budget *setBudget) {
	byKey := map[string]*setGroup{}
	var cands []*setGroup
	idx := map[*setGroup][]int{}
	for i, a := range acc {
		addr, rest := a.s, a.d
		if dir == "dst" {
			addr, rest = a.d, a.s
		}
		p, ok := setMember(addr)
		if groupOf[i] != nil || !ok {
			continue
		}
		shared := join(rest, a.pm)
		g := byKey[shared]
		if g == nil {
			g = &setGroup{dir: dir, shared: shared, first: i}
			byKey[shared] = g
			cands = append(cands, g)
		}
		g.members = append(g.members, p)
		if !slices.Contains(g.rules, a.rule) {
			g.rules = append(g.rules, a.rule)
		}
		idx[g] = append(idx[g], i)
	}
	for _, g := range cands {
		slices.SortFunc(g.members, comparePrefix)
		g.members = slices.Compact(g.members)
	}
	// Stable: equal sizes keep the order of their first accept.
	slices.SortStableFunc(cands, func(a, b *setGroup) int { return cmp.Compare(len(b.members), len(a.members)) })
	for _, g := range cands {
		if len(g.members) < MinSetSize || budget.left == 0 {
			continue
		}
		budget.left--
		g.set = &ipSet{name: setName(f, network, chain, dir, g.shared), family: f, members: g.members}
		for _, i := range idx[g] {
			groupOf[i] = g
		}
	}
}

// setMember is the prefix of an address match ("-s 10.0.0.1/32") that a
// hash:net set can hold: not "any", and not a /0, which hash:net refuses.
func setMember(m string) (netip.Prefix, bool) {
	_, text, ok := strings.Cut(m, " ")
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(text)
	if err != nil || p.Bits() == 0 {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// Set names: a family prefix, a hash of the network, a hash of what the
// set stands for. The network's part lets a network find every set it
// owns by name alone, including ones an interrupted apply left
// unreferenced; the rest stays the same across re-applies of a policy so
// the live set is updated in place. 6 + 8 + 16 = 30 characters, under
// ipset's 31.
const (
	setPrefix4  = "zn-r4-"
	setPrefix6  = "zn-r6-"
	tempPrefix4 = "zn-t4-"
	tempPrefix6 = "zn-t6-"
)

func setName(f Family, network string, fields ...string) string {
	return networkSetPrefix(f, network) + hashText(append([]string{network}, fields...)...)[:16]
}

// networkSetPrefix is the start of every live set name of a network.
func networkSetPrefix(f Family, network string) string {
	p := setPrefix4
	if f == IPv6 {
		p = setPrefix6
	}
	return p + hashText(network)[:8]
}

// tempSet is the name a set's next content is filled under before the
// swap: never referenced by a rule.
func tempSet(name string) string {
	switch {
	case strings.HasPrefix(name, setPrefix4):
		return tempPrefix4 + strings.TrimPrefix(name, setPrefix4)
	case strings.HasPrefix(name, setPrefix6):
		return tempPrefix6 + strings.TrimPrefix(name, setPrefix6)
	}
	return name
}

// ownedSet reports whether name is one of a network's sets of family f,
// live or temporary.
func ownedSet(f Family, network, name string) bool {
	live := networkSetPrefix(f, network)
	return strings.HasPrefix(name, live) || strings.HasPrefix(name, tempSet(live))
}

// hashText is a lower-case base32 SHA-256 of the fields, separated so
// ("a","bc") and ("ab","c") differ.
func hashText(fields ...string) string {
	h := sha256.Sum256([]byte(strings.Join(fields, "\x00")))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:]))
}
