//go:build linux

package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/zonenet/zonenet/overlay"
)

// The steps of a round, in order, each a Reconcile on the state the step
// before left.
const (
	stepFull      = "from empty"
	stepUnchanged = "unchanged"
	stepMAC       = "one MAC changed"
	stepRemoved   = "one removed"
	stepAdded     = "one added"
)

var steps = []string{stepFull, stepUnchanged, stepMAC, stepRemoved, stepAdded}

// wantChanges is what each step must write, as summary renders it: the
// package comment's cost per peer (1 FDB entry, 1 neighbour, 1 route per
// block, 1 set member), and nothing for peers that did not change. A
// changed MAC rewrites the FDB entry and the neighbour; its routes depend
// on the underlay address only and stay.
func wantChanges(step string, n int) string {
	switch step {
	case stepFull:
		return fmt.Sprintf("add fdb %d, add ipset %d, add route %d, set neigh %d", n, n, 2*n, n)
	case stepUnchanged:
		return "none"
	case stepMAC:
		return "add fdb 1, del fdb 1, set neigh 1"
	case stepRemoved:
		return "del fdb 1, del ipset 1, del neigh 1, del route 2"
	case stepAdded:
		return "add fdb 1, add ipset 1, add route 2, set neigh 1"
	}
	panic(step)
}

// limit is the time target of a step. From empty, 1,000 peers in under a
// second: a node joining a cluster of that size (or a daemon restarting
// on a fresh device) is reachable before its first containers start.
// Every other step is what a watch event costs, and must stay well under
// that: a tenth of it. Smaller clusters get the same budget per peer,
// with a floor for the fixed cost of a call (four dumps and a handle).
func limit(step string, n int) time.Duration {
	full := max(time.Duration(n)*time.Millisecond, 100*time.Millisecond)
	if step == stepFull {
		return full
	}
	return max(full/10, 20*time.Millisecond)
}

// summary renders changes as sorted "op kind count" items.
func summary(cs overlay.Changes) string {
	if len(cs) == 0 {
		return "none"
	}
	count := map[string]int{}
	for _, c := range cs {
		count[string(c.Op)+" "+string(c.Kind)]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = fmt.Sprintf("%s %d", k, count[k])
	}
	return strings.Join(keys, ", ")
}

// check is a pass/fail figure over every round: it shows the first
// round's value, or the first failing one.
type check struct {
	value, target string
	ok            bool
	detail        string
	set           bool
}

func (c *check) record(value, target string, ok bool, detail string) {
	if !c.set || (c.ok && !ok) {
		*c = check{value: value, target: target, ok: ok, detail: detail, set: true}
	}
}

// sizeResult gathers the rounds of one peer count.
type sizeResult struct {
	n       int
	times   map[string][]time.Duration
	changes map[string]*check
	kernel  [2]check // after the first step, after the last
	hwmKiB  int      // after the first Reconcile of the first round
	// One dump of the peer set after the first step, on a locked
	// thread and not (see node.readSet).
	setLocked, setUnlocked []time.Duration
}

func (r *runner) run(sizes []int) ([]*sizeResult, error) {
	var out []*sizeResult
	for _, n := range sizes {
		res := &sizeResult{n: n, times: map[string][]time.Duration{}, changes: map[string]*check{}}
		for _, s := range steps {
			res.changes[s] = &check{}
		}
		for i := 0; i < r.rounds; i++ {
			if err := r.round(n, i, res); err != nil {
				return nil, fmt.Errorf("%d peers, round %d: %w", n, i+1, err)
			}
		}
		out = append(out, res)
	}
	return out, nil
}

// round programs n peers into a fresh node and walks the steps.
func (r *runner) round(n, round int, res *sizeResult) error {
	nd, err := r.node(fmt.Sprintf("znos-%s-%d-%d", r.tag, n, round))
	if err != nil {
		return err
	}
	defer func() {
		if err := r.drop(nd); err != nil {
			r.log("%v", err)
		}
	}()

	peers := fakePeers(n)
	for _, step := range steps {
		switch step {
		case stepMAC:
			k := n / 2
			peers[k].VTEPMAC = overlay.DeriveMAC(peers[k].Name + "/moved")
		case stepRemoved:
			peers = slices.Delete(slices.Clone(peers), n/3, n/3+1)
		case stepAdded:
			peers = append(peers, fakePeer(n))
		}
		took, cs, err := nd.reconcile(peers)
		if err != nil {
			return fmt.Errorf("%s: reconcile: %w", step, err)
		}
		res.times[step] = append(res.times[step], took)
		got, want := summary(cs), wantChanges(step, n)
		res.changes[step].record(fmt.Sprint(len(cs)), fmt.Sprintf("= %d", countOf(want)), got == want,
			fmt.Sprintf("%s: wrote %s; want %s", step, got, want))
		if r.verbose {
			r.log("%d peers, round %d, %s: %.1f ms, %s", n, round+1, step, ms(took), got)
		}
		if step == stepFull && round == 0 {
			if res.hwmKiB, err = vmHWM(); err != nil {
				return err
			}
		}
		if step == stepFull {
			l, u, err := nd.readSet()
			if err != nil {
				return fmt.Errorf("read the peer set: %w", err)
			}
			res.setLocked, res.setUnlocked = append(res.setLocked, l), append(res.setUnlocked, u)
		}
		if step == stepFull || step == stepAdded {
			k, err := nd.kernel()
			if err != nil {
				return fmt.Errorf("%s: read the kernel: %w", step, err)
			}
			w := expect(peers)
			i := 0
			if step == stepAdded {
				i = 1
			}
			d := diff(k, w)
			res.kernel[i].record(counts(k), counts(w), d == "", fmt.Sprintf("after %s: %s", step, d))
		}
	}
	return nil
}

// countOf adds up the counts of a summary.
func countOf(s string) int {
	total := 0
	for _, item := range strings.Split(s, ", ") {
		var op, kind string
		var c int
		if _, err := fmt.Sscanf(item, "%s %s %d", &op, &kind, &c); err == nil {
			total += c
		}
	}
	return total
}

func counts(e entries) string {
	return fmt.Sprintf("%d/%d/%d/%d", len(e.fdb), len(e.neighs), len(e.routes), len(e.members))
}

// table prints the figures and returns whether any missed its target.
func table(w io.Writer, res []*sizeResult, rounds, startKiB int) (failed bool) {
	fmt.Fprintf(w, "overlay.Reconcile in one node namespace against N fake peers (1 underlay address, 1 VTEP MAC, 2 /26 blocks each);\n")
	fmt.Fprintf(w, "times: median (min-max) of %d rounds, each in a fresh namespace; kernel entries read back with netlink (fdb/neigh/route/set)\n\n", rounds)
	line := strings.Repeat("-", 100)
	fmt.Fprintf(w, "%-44s %-26s %-20s %s\n", "figure", "value", "target", "ok")
	fmt.Fprintln(w, line)
	var details []string
	row := func(fig, value, target string, ok bool, detail string) {
		mark := "ok"
		if !ok {
			mark = "FAIL"
			failed = true
			details = append(details, fig+": "+detail)
		}
		fmt.Fprintf(w, "%-44s %-26s %-20s %s\n", fig, value, target, mark)
	}
	for i, r := range res {
		label := fmt.Sprintf("%s peers", group(r.n))
		for _, step := range steps {
			ts := slices.Clone(r.times[step])
			slices.Sort(ts)
			lim := limit(step, r.n)
			med := median(ts)
			v := fmt.Sprintf("%.1f ms (%.1f-%.1f)", ms(med), ms(ts[0]), ms(ts[len(ts)-1]))
			row(label+", "+step+": Reconcile", v, fmt.Sprintf("< %s", lim), med < lim,
				fmt.Sprintf("median %.1f ms", ms(med)))
			c := r.changes[step]
			row("  changes written", c.value, c.target, c.ok, c.detail)
			if step == stepFull {
				k := r.kernel[0]
				row("  kernel entries fdb/neigh/route/set", k.value, "= "+k.target, k.ok, k.detail)
			}
		}
		k := r.kernel[1]
		row("  kernel entries after the three changes", k.value, "= "+k.target, k.ok, k.detail)
		fmt.Fprintf(w, "%-44s %-26s %-20s %s\n", "  one peer-set dump, locked thread / not",
			fmt.Sprintf("%.1f / %.1f ms", ms(median(r.setLocked)), ms(median(r.setUnlocked))), "(diagnostic)", "-")
		// The peak only grows: after the first size it says nothing
		// about the others.
		if i == 0 {
			fmt.Fprintf(w, "%-44s %-26s %-20s %s\n", "  max RSS (VmHWM) after "+group(r.n)+" from empty",
				fmt.Sprintf("%.1f MiB (%.1f at start)", float64(r.hwmKiB)/1024, float64(startKiB)/1024), "(reported)", "-")
		}
		fmt.Fprintln(w, line)
	}
	for _, d := range details {
		fmt.Fprintln(w, "FAIL", d)
	}
	return failed
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// group writes 1000 as 1,000.
func group(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
