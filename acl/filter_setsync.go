package acl

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The order of a policy change with sets, all under the iptables lock:
//
//  1. fill: each wanted set that exists gets its new content in a
//     temporary set; one that does not is created filled. Nothing that
//     matches packets has changed yet.
//  2. swap (same exec as 1): each temporary set trades content with its
//     live set, so a rule that already matched the set sees the new list
//     at once, never a half-filled one. The temporary holds the old list.
//  3. iptables-restore: the rules, which may name the new sets (they
//     exist) and stop naming stale ones.
//  4. destroy the temporaries and the network's sets no rule names any
//     more. A set can only be destroyed once unreferenced, hence after 3.
//
// When 3 fails the swaps are undone from the temporaries and new sets are
// destroyed, so the old policy stays in force with its old lists. Which
// sets are the network's is read from their names (networkSetPrefix): it
// needs no state of its own and also finds sets an interrupted apply made
// but never referenced.

// withSets brings a network's sets of family f to want around restore,
// which applies the rules that use them. rs is the table before restore.
func withSets(s Sets, f Family, network string, rs ruleSet, want []ipSet, restore func() error) error {
	if s == nil || len(want) == 0 && !rs.namesSetOf(f, network) {
		// No set before, none after: no ipset exec for small policies.
		return restore()
	}
	have, err := s.ListSets()
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, n := range have {
		exists[n] = true
	}
	wanted := map[string]bool{}
	var fill, swap, undo bytes.Buffer
	var temps, created []string
	for _, st := range want {
		wanted[st.name] = true
		tmp := tempSet(st.name)
		if exists[tmp] { // left by an interrupted apply; nothing names it
			fmt.Fprintf(&fill, "destroy %s\n", tmp)
			exists[tmp] = false
		}
		if !exists[st.name] {
			writeSet(&fill, st.name, st)
			created = append(created, st.name)
			continue
		}
		writeSet(&fill, tmp, st)
		fmt.Fprintf(&swap, "swap %s %s\n", tmp, st.name)
		temps = append(temps, tmp)
	}
	undo.Write(swap.Bytes()) // a swap undoes itself
	// Fill and swap in one exec. The batch stops at its first failing
	// line and every swap comes after every fill, so a failed fill (a bad
	// member, a full namespace) leaves the live sets untouched. A swap only
	// fails if something outside zonenet removed or remade one of the
	// network's sets since the listing above; the next apply rebuilds.
	fill.Write(swap.Bytes())
	if fill.Len() > 0 {
		if err := s.RestoreSets(fill.Bytes()); err != nil {
			return errors.Join(fmt.Errorf("fill sets: %w", err), destroySets(s, slices.Concat(temps, created)))
		}
	}
	if err := restore(); err != nil {
		if undo.Len() > 0 {
			if uerr := s.RestoreSets(undo.Bytes()); uerr != nil {
				err = errors.Join(err, fmt.Errorf("swap sets back: %w", uerr))
			}
		}
		return errors.Join(err, destroySets(s, slices.Concat(temps, created)))
	}
	var stale []string
	for _, n := range have {
		if ownedSet(f, network, n) && exists[n] && !wanted[n] && !slices.Contains(temps, n) {
			stale = append(stale, n)
		}
	}
	if err := destroySets(s, slices.Concat(temps, stale)); err != nil {
		return fmt.Errorf("sets of the previous policy: %w", err)
	}
	return nil
}

// namesSetOf reports whether a rule of the table matches one of the
// network's sets of family f.
func (rs ruleSet) namesSetOf(f Family, network string) bool {
	ref := "--match-set " + networkSetPrefix(f, network)
	for l := range rs.rules {
		if strings.Contains(l, ref) {
			return true
		}
	}
	return false
}

// dropNetworkSets destroys every set of a network and family, once no
// rule names them. rs is the table before the network's rules were taken
// away: a family where the network had no chain is not listed, so a
// single-stack network's apply costs no ipset exec for the other family.
func dropNetworkSets(r Runner, f Family, network string, rs ruleSet) error {
	s := setsOf(r)
	if s == nil || !rs.namesSetOf(f, network) && !slices.ContainsFunc(networkChains(network), func(c string) bool { return rs.chains[c] }) {
		return nil
	}
	have, err := s.ListSets()
	if err != nil {
		return err
	}
	var mine []string
	for _, n := range have {
		if ownedSet(f, network, n) {
			mine = append(mine, n)
		}
	}
	return destroySets(s, mine)
}

// destroySets destroys the named sets, which should exist. A set whose
// last rule was just deleted may be released by the kernel a moment after
// the restore returns (nf_tables frees rules from a work queue), so a
// refused destroy is retried for a little while before it is an error.
// Names that turn out not to exist are dropped from the retry.
func destroySets(s Sets, names []string) error {
	wait := 10 * time.Millisecond
	for attempt := 0; len(names) > 0; attempt++ {
		var b bytes.Buffer
		for _, n := range names {
			fmt.Fprintf(&b, "destroy %s\n", n)
		}
		err := s.RestoreSets(b.Bytes())
		if err == nil {
			return nil
		}
		if attempt == 6 {
			return fmt.Errorf("destroy sets: %w", err)
		}
		have, lerr := s.ListSets()
		if lerr != nil {
			return errors.Join(fmt.Errorf("destroy sets: %w", err), lerr)
		}
		left := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !slices.Contains(have, n) })
		if len(left) == len(names) {
			time.Sleep(wait)
			wait *= 2
		}
		names = left
	}
	return nil
}
