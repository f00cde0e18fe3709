package acltest

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// maxSets is the kernel's default CONFIG_IP_SET_MAX: sets per namespace.
const maxSets = 256

// fakeSet is one hash:net set.
type fakeSet struct {
	family  string // "inet" or "inet6"
	members map[netip.Prefix]bool
}

// ListSets implements acl.Sets.
func (f *Fake) ListSets() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.setNames(), nil
}

func (f *Fake) setNames() []string {
	var out []string
	for n := range f.sets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// SetNames lists the sets, sorted.
func (f *Fake) SetNames() []string { n, _ := f.ListSets(); return n }

// SetMembers returns a set's members, sorted, or false when it does not
// exist.
func (f *Fake) SetMembers(name string) ([]netip.Prefix, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sets[name]
	if !ok {
		return nil, false
	}
	var out []netip.Prefix
	for p := range s.members {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out, true
}

// RestoreSets implements acl.Sets the way `ipset restore` behaves: lines
// apply in order and the first failing one stops the batch, keeping what
// came before. A set that a rule of any table names cannot be destroyed.
func (f *Fake) RestoreSets(batch []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sets == nil {
		f.sets = map[string]*fakeSet{}
	}
	f.SetRestores++
	for i, l := range strings.Split(strings.TrimSpace(string(batch)), "\n") {
		if l == "" {
			continue
		}
		if err := f.setLine(strings.Fields(l)); err != nil {
			return fmt.Errorf("fake ipset: line %d %q: %w", i+1, l, err)
		}
	}
	return nil
}

func (f *Fake) setLine(fields []string) error {
	if len(fields) < 2 {
		return fmt.Errorf("too short")
	}
	name := fields[1]
	if len(name) > 31 {
		return fmt.Errorf("set name longer than 31")
	}
	s := f.sets[name]
	switch fields[0] {
	case "create":
		if s != nil {
			return fmt.Errorf("set exists")
		}
		if len(f.sets) >= maxSets {
			return fmt.Errorf("no room for more than %d sets", maxSets)
		}
		if len(fields) < 5 || fields[2] != "hash:net" || fields[3] != "family" || fields[4] != "inet" && fields[4] != "inet6" {
			return fmt.Errorf("only hash:net with a family is faked")
		}
		f.sets[name] = &fakeSet{family: fields[4], members: map[netip.Prefix]bool{}}
		return nil
	case "add":
		if s == nil {
			return fmt.Errorf("no such set")
		}
		if len(fields) != 3 {
			return fmt.Errorf("add takes one member")
		}
		p, err := netip.ParsePrefix(fields[2])
		if err != nil {
			a, aerr := netip.ParseAddr(fields[2])
			if aerr != nil {
				return err
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4() != (s.family == "inet") || p.Bits() == 0 {
			return fmt.Errorf("member %s does not fit a %s hash:net", p, s.family)
		}
		if p = p.Masked(); s.members[p] {
			return fmt.Errorf("already added")
		}
		s.members[p] = true
		return nil
	case "swap":
		if len(fields) != 3 || s == nil || f.sets[fields[2]] == nil {
			return fmt.Errorf("swap of missing sets")
		}
		o := f.sets[fields[2]]
		if s.family != o.family {
			return fmt.Errorf("swap of sets of different families")
		}
		s.members, o.members = o.members, s.members
		return nil
	case "destroy":
		if s == nil {
			return fmt.Errorf("no such set")
		}
		for k, tab := range f.tables {
			for _, rules := range tab {
				for _, r := range rules {
					if setRef(r, name) {
						return fmt.Errorf("set in use by a rule of %s: %s", k, r)
					}
				}
			}
		}
		delete(f.sets, name)
		return nil
	}
	return fmt.Errorf("unsupported command")
}

// setRef reports whether a rule matches against the named set.
func setRef(rule, name string) bool {
	return strings.Contains(rule+" ", "--match-set "+name+" ")
}

// checkSetRefs fails a rule naming a set that does not exist, as
// iptables does.
func (f *Fake) checkSetRefs(rule string) error {
	_, after, ok := strings.Cut(rule, "--match-set ")
	if !ok {
		return nil
	}
	name := strings.Fields(after)[0]
	if f.sets[name] == nil {
		return fmt.Errorf("fake: set %s doesn't exist", name)
	}
	return nil
}

// DeclareSet makes a set that zonenet creates outside RestoreSets (over
// netlink) known to the fake's tables, so rules may name it.
func (f *Fake) DeclareSet(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sets == nil {
		f.sets = map[string]*fakeSet{}
	}
	if f.sets[name] == nil {
		f.sets[name] = &fakeSet{family: "inet", members: map[netip.Prefix]bool{}}
	}
}

// ForgetSet is DeclareSet undone.
func (f *Fake) ForgetSet(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sets, name)
}
