//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/overlay"
)

func TestFakePeersAreDistinct(t *testing.T) {
	peers := append(fakePeers(1000), fakePeer(1000))
	seen := map[string]string{}
	for _, p := range peers {
		keys := []string{"underlay " + p.Underlay.String(), "mac " + p.VTEPMAC.String()}
		for _, b := range p.Blocks {
			keys = append(keys, "block "+b.String())
			if b != b.Masked() || b.Bits() != 26 {
				t.Fatalf("%s: block %s is not a /26 network", p.Name, b)
			}
		}
		for _, k := range keys {
			if o, ok := seen[k]; ok {
				t.Fatalf("%s of %s is also %s's", k, p.Name, o)
			}
			seen[k] = p.Name
		}
		if nodeUnderlay.Contains(p.Underlay) {
			t.Fatalf("%s: underlay %s inside the node's %s", p.Name, p.Underlay, nodeUnderlay)
		}
	}
	if fakePeer(7).Underlay != fakePeer(7).Underlay || fakePeer(999).Blocks[1].String() != "10.65.243.192/26" {
		t.Errorf("peers are not a fixed function of their index: %v", fakePeer(999).Blocks)
	}
}

func TestSummaryAndCount(t *testing.T) {
	cs := overlay.Changes{
		{Op: overlay.Set, Kind: overlay.KindNeigh}, {Op: overlay.Del, Kind: overlay.KindFDB}, {Op: overlay.Add, Kind: overlay.KindFDB},
	}
	if got := summary(cs); got != wantChanges(stepMAC, 10) {
		t.Errorf("summary %q, want %q", got, wantChanges(stepMAC, 10))
	}
	if summary(nil) != wantChanges(stepUnchanged, 10) || countOf("none") != 0 {
		t.Error("no changes")
	}
	if n := countOf(wantChanges(stepFull, 1000)); n != 5000 {
		t.Errorf("count of a full reconcile of 1,000 peers: %d, want 5000", n)
	}
}

func TestDiff(t *testing.T) {
	want := expect(fakePeers(3))
	if d := diff(want, want); d != "" {
		t.Errorf("diff of equal entries: %s", d)
	}
	got := expect(fakePeers(3))
	got.routes = got.routes[1:]
	if d := diff(got, want); !strings.Contains(d, "route: 5 entries, want 6") || !strings.Contains(d, "missing route") {
		t.Errorf("diff with a route missing: %q", d)
	}
}

func TestLimitAndGroup(t *testing.T) {
	if limit(stepFull, 1000) != time.Second || limit(stepUnchanged, 1000) != 100*time.Millisecond ||
		limit(stepFull, 50) != 100*time.Millisecond || limit(stepAdded, 50) != 20*time.Millisecond {
		t.Error("targets moved")
	}
	for n, s := range map[int]string{50: "50", 1000: "1,000", 1234567: "1,234,567"} {
		if group(n) != s {
			t.Errorf("group(%d) = %s", n, group(n))
		}
	}
}
