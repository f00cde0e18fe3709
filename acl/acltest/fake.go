// Package acltest provides a stateful in-memory stand-in for iptables, for
// unit tests of rule rendering without root.
package acltest

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/zonenet/zonenet/acl"
)

// Fake keeps tables per family as chains of rule lines and applies
// iptables-restore --noflush input the way the kernel would: all or nothing.
// It also keeps the namespace's ipsets (ipset.go), which rules may name.
type Fake struct {
	lock        sync.Mutex                     // what Lock holds
	mu          sync.Mutex                     // guards the tables and sets
	tables      map[string]map[string][]string // "4/nat" → chain → rules ("-A ..." lines)
	sets        map[string]*fakeSet
	Restores    int
	SetRestores int
	// FailRestore, when set, is asked before each restore; an error it
	// returns fails the restore with nothing applied.
	FailRestore func(fam acl.Family, tables []acl.Table) error
}

var builtin = map[string][]string{
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
}

func (f *Fake) table(fam acl.Family, t string) map[string][]string {
	if f.tables == nil {
		f.tables = map[string]map[string][]string{}
	}
	k := fmt.Sprintf("%d/%s", fam, t)
	if f.tables[k] == nil {
		f.tables[k] = map[string][]string{}
		for _, c := range builtin[t] {
			f.tables[k][c] = nil
		}
	}
	return f.tables[k]
}

func clone(m map[string][]string) map[string][]string {
	c := make(map[string][]string, len(m))
	for k, v := range m {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// Restore implements acl.Runner.
func (f *Fake) Restore(fam acl.Family, t string, body []byte) error {
	return f.RestoreTables(fam, []acl.Table{{Name: t, Body: body}})
}

// RestoreTables implements acl.Runner: all tables or none, one restore.
func (f *Fake) RestoreTables(fam acl.Family, tables []acl.Table) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.FailRestore != nil {
		if err := f.FailRestore(fam, tables); err != nil {
			return err
		}
	}
	next := map[string]map[string][]string{}
	for _, t := range tables {
		tab, err := f.apply(fam, t.Name, t.Body)
		if err != nil {
			return err
		}
		next[fmt.Sprintf("%d/%s", fam, t.Name)] = tab
	}
	for k, tab := range next {
		f.tables[k] = tab
	}
	f.Restores++
	return nil
}

func (f *Fake) apply(fam acl.Family, t string, body []byte) (map[string][]string, error) {
	tab := clone(f.table(fam, t))
	for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if l == "" {
			continue
		}
		fields := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, ":"):
			tab[fields[0][1:]] = nil // declare: create or flush
		case fields[0] == "-A":
			if _, ok := tab[fields[1]]; !ok {
				return nil, fmt.Errorf("fake: -A into missing chain %s", fields[1])
			}
			if tgt := jumpTarget(l); tgt != "" {
				if _, ok := tab[tgt]; !ok && !isTarget(tgt) {
					return nil, fmt.Errorf("fake: jump to missing chain %s", tgt)
				}
			}
			if err := f.checkSetRefs(l); err != nil {
				return nil, err
			}
			tab[fields[1]] = append(tab[fields[1]], l)
		case fields[0] == "-I":
			if _, ok := tab[fields[1]]; !ok {
				return nil, fmt.Errorf("fake: -I into missing chain %s", fields[1])
			}
			pos, rest := 1, fields[2:]
			if n, err := strconv.Atoi(fields[2]); err == nil {
				pos, rest = n, fields[3:]
			}
			rules := tab[fields[1]]
			if pos < 1 || pos > len(rules)+1 {
				return nil, fmt.Errorf("fake: -I at position %d of chain %s with %d rules", pos, fields[1], len(rules))
			}
			rule := "-A " + fields[1] + " " + strings.Join(rest, " ")
			if err := f.checkSetRefs(rule); err != nil {
				return nil, err
			}
			tab[fields[1]] = append(rules[:pos-1:pos-1], append([]string{rule}, rules[pos-1:]...)...)
		case fields[0] == "-D":
			want := "-A" + strings.TrimPrefix(l, "-D")
			rules := tab[fields[1]]
			i := indexOf(rules, want)
			if i < 0 {
				return nil, fmt.Errorf("fake: -D of missing rule %q", l)
			}
			tab[fields[1]] = append(rules[:i], rules[i+1:]...)
		case fields[0] == "-F":
			tab[fields[1]] = nil
		case fields[0] == "-X":
			if len(tab[fields[1]]) > 0 {
				return nil, fmt.Errorf("fake: -X of non-empty chain %s", fields[1])
			}
			for c, rules := range tab {
				for _, r := range rules {
					if jumpTarget(r) == fields[1] {
						return nil, fmt.Errorf("fake: -X of chain %s still referenced from %s", fields[1], c)
					}
				}
			}
			delete(tab, fields[1])
		default:
			return nil, fmt.Errorf("fake: unsupported line %q", l)
		}
	}
	return tab, nil
}

func isTarget(t string) bool {
	switch t {
	case "ACCEPT", "DROP", "RETURN", "MASQUERADE", "DNAT", "SNAT", "REJECT", "LOG", "NFLOG", "MARK":
		return true
	}
	return false
}

func jumpTarget(rule string) string {
	_, after, ok := strings.Cut(rule, " -j ")
	if !ok {
		return ""
	}
	return strings.Fields(after)[0]
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// Save implements acl.Runner, in iptables-save's layout.
func (f *Fake) Save(fam acl.Family, t string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tab := f.table(fam, t)
	var names []string
	for c := range tab {
		names = append(names, c)
	}
	sort.Strings(names)
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%s\n", t)
	for _, c := range names {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, c := range names {
		for _, r := range tab[c] {
			b.WriteString(r + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes(), nil
}

// Rules returns a chain's rules, or nil and false when it does not exist.
func (f *Fake) Rules(fam acl.Family, t, chain string) ([]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.table(fam, t)[chain]
	return append([]string(nil), r...), ok
}

// Chains lists the chains of a table that are not built in.
func (f *Fake) Chains(fam acl.Family, t string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for c := range f.table(fam, t) {
		if indexOf(builtin[t], c) < 0 {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// Lock implements acl.Runner.
func (f *Fake) Lock() (func(), error) {
	f.lock.Lock()
	return f.lock.Unlock, nil
}
