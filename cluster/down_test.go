package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/test/etcdtest"
)

// TestEtcdDown: with etcd down, every call fails with a timeout instead of
// hanging; once etcd is back, calls work again, the registered node is
// registered again (its lease lapsed meanwhile) and watches carry on.
func TestEtcdDown(t *testing.T) {
	srv := etcdtest.New(t)
	const timeout = time.Second
	short := func(c *cluster.Config) { c.RequestTimeout = timeout }
	s := open(t, srv, "a", short)
	watcher := open(t, srv, "watcher", short)
	raw := srv.Client()
	register(t, s, node("n1", "192.0.2.1", "02:00:00:00:00:01"))
	oldLease := leaseOf(t, raw, s, "n1")
	events := watcher.Watch(ctxT(t))
	nextEvent(t, events, 5*time.Second, "initial sync", func(ev cluster.Event) bool { return ev.Type == cluster.EventSynced })

	srv.Stop()
	down := time.Now()
	ctx := ctxT(t)
	calls := []struct {
		name string
		call func() error
	}{
		{"Nodes", func() error { _, _, err := s.Nodes(ctx); return err }},
		{"Register", func() error { return s.Register(ctx, node("n1", "192.0.2.1", "02:00:00:00:00:01")) }},
		{"ClaimBlock", func() error {
			_, err := s.ClaimBlock(ctx, req("prod", "frontend", "10.0.1.0/24", 26, "n1"))
			return err
		}},
		{"Blocks", func() error { _, err := s.Blocks(ctx, "prod"); return err }},
		{"ReleaseBlock", func() error {
			return s.ReleaseBlock(ctx, cluster.Block{Network: "prod", Prefix: mustPrefix("10.0.1.0/26"), Node: "n1"})
		}},
		{"ReclaimDead", func() error { _, err := s.ReclaimDead(ctx, time.Minute, time.Now()); return err }},
		{"PutPolicy", func() error { _, err := s.PutPolicy(ctx, "prod", []byte("x: 1")); return err }},
		{"Policy", func() error { _, err := s.Policy(ctx, "prod"); return err }},
	}
	check := func(name string, call func() error) {
		t.Helper()
		start := time.Now()
		err := call()
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with etcd down: %v, want a timeout", name, err)
		}
		if took > timeout+time.Second {
			t.Errorf("%s took %s to fail, timeout %s", name, took, timeout)
		}
	}
	for _, c := range calls {
		check(c.name, c.call)
	}
	// A caller's own deadline ends a call earlier.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	start := time.Now()
	if _, _, err := s.Nodes(cctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 700*time.Millisecond {
		t.Errorf("Nodes with a 200 ms deadline: %v after %s", err, time.Since(start))
	}
	cancel()

	// Stay down past the TTL so the keep-alive gives the lease up.
	if rest := 2*testTTL - time.Since(down); rest > 0 {
		time.Sleep(rest)
	}
	// The store now retries the registration in the background; a
	// Register meanwhile still answers within its timeout.
	for range 3 {
		check("Register during background retries", calls[1].call)
	}
	srv.Start()
	up := time.Now()

	took := eventually(t, 15*time.Second, "calls work again", func() bool {
		_, _, err := s.Nodes(ctx)
		return err == nil
	})
	t.Logf("etcd down for %s; calls work %s after restart", up.Sub(down).Round(time.Millisecond), took.Round(time.Millisecond))
	// The client reconnects every 2 s at most, however long etcd was down.
	if took > 4*time.Second {
		t.Errorf("calls work only %s after etcd is back", took)
	}
	eventually(t, 15*time.Second, "n1 registered under a new lease", func() bool {
		l := leaseOf(t, raw, s, "n1")
		return l != 0 && l != oldLease
	})
	t.Logf("n1 registered again %s after restart", time.Since(up).Round(time.Millisecond))
	// And it stays: the new lease is kept alive.
	time.Sleep(2 * testTTL)
	if _, ok := nodeNames(t, s)["n1"]; !ok {
		t.Fatal("n1 expired after re-registration")
	}
	// The watch carried on across the restart.
	if _, err := s.PutPolicy(ctx, "prod", []byte("after: restart")); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, 10*time.Second, "policy written after the restart", func(ev cluster.Event) bool {
		return ev.Type == cluster.EventPut && ev.Policy != nil && string(ev.Policy.Doc) == "after: restart"
	})
	if _, err := s.ClaimBlock(ctx, req("prod", "frontend", "10.0.1.0/24", 26, "n1")); err != nil {
		t.Fatalf("claim after restart: %v", err)
	}
}
