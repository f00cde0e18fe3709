package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/zonenet/zonenet/test/etcdtest"
)

// describe is a short, comparable form of an event.
func describe(ev Event) string {
	switch {
	case ev.Node != nil:
		return fmt.Sprintf("%s node %s %s", ev.Type, ev.Node.Name, ev.Node.Underlay)
	case ev.Block != nil:
		return fmt.Sprintf("%s block %s %s", ev.Type, ev.Block.Prefix, ev.Block.Node)
	case ev.Policy != nil:
		return fmt.Sprintf("%s policy %s %q", ev.Type, ev.Policy.Network, ev.Policy.Doc)
	}
	return ev.Type.String()
}

// until collects events up to and including the next EventSynced.
func until(t *testing.T, ch <-chan Event) (got []string, synced Event) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Type == EventSynced {
				return got, ev
			}
			got = append(got, describe(ev))
		case <-timeout:
			t.Fatalf("no EventSynced within 15 s; got %q", got)
		}
	}
}

// TestWatchRelistAfterCompaction: a watcher that resumes from a revision
// etcd has compacted away lists again and reports exactly the difference
// with what it had reported, then follows changes again.
func TestWatchRelistAfterCompaction(t *testing.T) {
	srv := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{Endpoints: srv.Endpoints(), TLS: srv.ClientTLS("a"), NodeTTL: 2 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	put := func(network, doc string) {
		t.Helper()
		_, err := s.PutPolicy(ctx, network, []byte(doc))
		must(err)
	}
	claim := func() {
		t.Helper()
		_, err := s.ClaimBlock(ctx, BlockRequest{Network: "prod", Zone: "frontend", Subnet: netip.MustParsePrefix("10.0.1.0/24"), BlockBits: 26, Node: "n1"})
		must(err)
	}
	must(s.Register(ctx, Node{Name: "n1", Underlay: netip.MustParseAddr("192.0.2.1"), VTEPMAC: "02:00:00:00:00:01"}))
	claim()
	put("p1", "one")
	put("p2", "two")

	events := make(chan Event, 100)
	w := &watcher{s: s, out: events, view: map[string]viewItem{}}
	must(w.relist(ctx))
	got, _ := until(t, events)
	want := []string{
		`put block 10.0.1.0/26 n1`,
		`put node n1 192.0.2.1`,
		`put policy p1 "one"`,
		`put policy p2 "two"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("first listing:\n got %q\nwant %q", got, want)
	}

	// While the watcher is not following: changes, then a compaction that
	// removes the revisions it would resume from.
	must(s.DeletePolicy(ctx, "p1"))
	put("p2", "two, changed")
	claim()
	put("p3", "three")
	put("p4", "short-lived")
	must(s.DeletePolicy(ctx, "p4"))
	rev, err := s.cli.Get(ctx, "compact-here")
	must(err)
	if _, err := s.cli.Compact(ctx, rev.Header.Revision); err != nil {
		t.Fatalf("compact: %v", err)
	}

	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(wctx)
	}()
	defer func() { stop(); <-done }()
	got, synced := until(t, events)
	want = []string{
		`delete policy p1 "one"`,
		`put block 10.0.1.64/26 n1`,
		`put policy p2 "two, changed"`,
		`put policy p3 "three"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after compaction:\n got %q\nwant %q", got, want)
	}
	if synced.Revision < rev.Header.Revision {
		t.Errorf("synced at revision %d, before the compaction at %d", synced.Revision, rev.Header.Revision)
	}
	// Following again.
	put("p5", "five")
	select {
	case ev := <-events:
		if d := describe(ev); d != `put policy p5 "five"` {
			t.Fatalf("after the re-listing: %s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event after the re-listing")
	}
}
