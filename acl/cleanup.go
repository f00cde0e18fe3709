package acl

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// A host cleanup removes everything of zonenet's from the tables of the
// current network namespace, whatever network, zone or container made
// it and whether or not a store still remembers it: ownership is read
// from the names alone. Chains named ZONENET-* (top-level) or ZN-*
// (per owner) are ours in every table and family, and so is every rule
// that leads into one of them or uses one of our ipsets, wherever it
// sits. Nothing else is touched: not the policies of the built-in
// chains, not a foreign chain's other rules, not a foreign chain that
// only our chains jumped to.

// cleanupTables are the tables a cleanup looks in. zonenet writes only
// filter and nat today; the others are searched so that a leftover of a
// later version, or a hand-made ZN- chain, is found too.
var cleanupTables = []string{"filter", "nat", "mangle", "raw", "security"}

// OwnsChain reports whether a chain name is zonenet's.
func OwnsChain(name string) bool {
	return strings.HasPrefix(name, "ZONENET-") || strings.HasPrefix(name, "ZN-")
}

// OwnsSet reports whether an ipset name is zonenet's.
func OwnsSet(name string) bool { return strings.HasPrefix(name, SetPrefix) }

// CleanupPlan is what a cleanup will remove from the tables, as read by
// PlanCleanup.
type CleanupPlan struct {
	tables []tableCleanup
}

// tableCleanup is one table of one family.
type tableCleanup struct {
	family Family
	table  string
	// unhook are the "-A" lines, outside our chains, that jump or go to
	// one of our chains or use one of our sets, in iptables-save order
	// and with repeats (each is deleted once per copy).
	unhook []string
	chains []ownedChain
}

type ownedChain struct {
	name  string
	rules int
}

// PlanCleanup reads every table of both families and returns what a
// cleanup removes. The caller holds r's lock (WithLock) from here until
// the plan is applied, so that no zonenet process changes the tables in
// between.
func PlanCleanup(r Runner) (*CleanupPlan, error) {
	p := &CleanupPlan{}
	for _, f := range []Family{IPv4, IPv6} {
		for _, t := range cleanupTables {
			saved, err := r.Save(f, t)
			if err != nil {
				if t != "filter" && t != "nat" && strings.Contains(err.Error(), "does not exist") {
					continue // a table this kernel does not have holds nothing of ours
				}
				return nil, err
			}
			if tc := planTable(f, t, saved); len(tc.unhook)+len(tc.chains) > 0 {
				p.tables = append(p.tables, tc)
			}
		}
	}
	return p, nil
}

// planTable finds our objects in one iptables-save table.
func planTable(f Family, table string, saved []byte) tableCleanup {
	tc := tableCleanup{family: f, table: table}
	count := map[string]int{} // rules per chain of ours
	var order []string        // our chains, as declared
	for _, l := range strings.Split(string(saved), "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			name, _, _ := strings.Cut(l[1:], " ")
			if _, seen := count[name]; OwnsChain(name) && !seen {
				order = append(order, name)
				count[name] = 0
			}
		case strings.HasPrefix(l, "-A "):
			r := parseRule(l)
			if OwnsChain(r.chain) {
				count[r.chain]++
				continue // goes with its chain's flush
			}
			if OwnsChain(r.target) || r.usesOwnSet() {
				tc.unhook = append(tc.unhook, l)
			}
		}
	}
	for _, name := range order {
		tc.chains = append(tc.chains, ownedChain{name: name, rules: count[name]})
	}
	return tc
}

// saveRule is what a cleanup needs to know of one "-A" line.
type saveRule struct {
	chain  string
	target string   // after -j or -g; "" when none
	sets   []string // ipsets the rule matches on or writes to
}

func parseRule(l string) saveRule {
	w := saveWords(l)
	r := saveRule{}
	if len(w) > 1 {
		r.chain = w[1]
	}
	for i := 2; i+1 < len(w); i++ {
		switch w[i] {
		case "-j", "-g", "--jump", "--goto":
			r.target = w[i+1]
		case "--match-set", "--add-set", "--del-set", "--map-set":
			r.sets = append(r.sets, w[i+1])
		}
	}
	return r
}

func (r saveRule) usesOwnSet() bool {
	for _, s := range r.sets {
		if OwnsSet(s) {
			return true
		}
	}
	return false
}

// saveWords splits an iptables-save line into words. A double-quoted word
// (a comment, with \" inside) is one word, so text in a comment is never
// taken for an option.
func saveWords(l string) []string {
	var out []string
	var cur strings.Builder
	quoted, escaped, inWord := false, false, false
	for _, c := range l {
		switch {
		case escaped:
			cur.WriteRune(c)
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
			inWord = true
		case c == ' ' && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// Empty reports whether the tables hold nothing of ours.
func (p *CleanupPlan) Empty() bool { return len(p.tables) == 0 }

// Items describes each object the plan removes, one line each, in the
// order Apply removes them.
func (p *CleanupPlan) Items() []string {
	var out []string
	for _, tc := range p.tables {
		out = append(out, tc.items()...)
	}
	return out
}

func (tc tableCleanup) items() []string {
	where := binary(tc.family, "") + " " + tc.table
	var out []string
	for _, l := range tc.unhook {
		out = append(out, where+" rule: "+l)
	}
	for _, c := range tc.chains {
		unit := "rules"
		if c.rules == 1 {
			unit = "rule"
		}
		out = append(out, fmt.Sprintf("%s chain %s (%d %s)", where, c.name, c.rules, unit))
	}
	return out
}

// Apply removes what the plan found, with two restores per family: the
// first deletes every rule leading into our chains and flushes them, all
// tables at once; the second deletes the chains, by then empty and
// unreferenced. iptables-nft refuses to delete a chain whose last jump is
// deleted in the same restore. done is called with the items of a family
// once they are gone. The caller holds r's lock.
func (p *CleanupPlan) Apply(r Runner, done func(item string)) error {
	for _, f := range []Family{IPv4, IPv6} {
		var unhook, del []Table
		var items []string
		for _, tc := range p.tables {
			if tc.family != f {
				continue
			}
			items = append(items, tc.items()...)
			if b := tc.unhookBody(); len(b) > 0 {
				unhook = append(unhook, Table{Name: tc.table, Body: b})
			}
			if b := tc.deleteBody(); len(b) > 0 {
				del = append(del, Table{Name: tc.table, Body: b})
			}
		}
		for _, step := range [][]Table{unhook, del} {
			if len(step) == 0 {
				continue
			}
			if err := r.RestoreTables(f, step); err != nil {
				return fmt.Errorf("cleanup: %w", err)
			}
		}
		for _, it := range items {
			if done != nil {
				done(it)
			}
		}
	}
	return nil
}

func (tc tableCleanup) unhookBody() []byte {
	var b bytes.Buffer
	for _, l := range tc.unhook {
		b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
	}
	for _, c := range tc.chains {
		fmt.Fprintf(&b, "-F %s\n", c.name)
	}
	return b.Bytes()
}

func (tc tableCleanup) deleteBody() []byte {
	var b bytes.Buffer
	for _, c := range tc.chains {
		fmt.Fprintf(&b, "-X %s\n", c.name)
	}
	return b.Bytes()
}

// DestroyOwnSets destroys every ipset of ours, after the rules using them
// are gone (Apply). A set still listed in another of ours (a list:set)
// cannot go first, so failures are retried while a pass makes progress.
// done is called with each destroyed set's name; dryRun only lists them.
func DestroyOwnSets(s Sets, dryRun bool, done func(name string)) error {
	if done == nil {
		done = func(string) {}
	}
	names, err := s.ListSets()
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	var left []string
	for _, n := range names {
		if OwnsSet(n) {
			left = append(left, n)
		}
	}
	sort.Strings(left)
	if dryRun {
		for _, n := range left {
			done(n)
		}
		return nil
	}
	for len(left) > 0 {
		var failed []string
		var errs []string
		for _, n := range left {
			if err := s.RestoreSets([]byte("destroy " + n + "\n")); err != nil {
				failed = append(failed, n)
				errs = append(errs, err.Error())
				continue
			}
			done(n)
		}
		if len(failed) == len(left) {
			return fmt.Errorf("cleanup: %s", strings.Join(errs, "; "))
		}
		left = failed
	}
	return nil
}
