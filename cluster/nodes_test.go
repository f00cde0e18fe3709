package cluster_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/test/etcdtest"
)

// TestRegisterTTL: a node whose store closes without deregistering is
// gone within its TTL, and a watcher sees it go; a node that comes back
// with another underlay and MAC is seen changed.
func TestRegisterTTL(t *testing.T) {
	srv := etcdtest.New(t)
	watcher := open(t, srv, "watcher")
	events := watcher.Watch(ctxT(t))
	nextEvent(t, events, 5*time.Second, "initial sync", func(ev cluster.Event) bool { return ev.Type == cluster.EventSynced })

	a := open(t, srv, "a")
	register(t, a, node("n1", "192.0.2.1", "02:00:00:00:00:01"))
	ev := nextEvent(t, events, 5*time.Second, "n1 appears", isNode(cluster.EventPut, "n1"))
	if ev.Node.Underlay != netip.MustParseAddr("192.0.2.1") || ev.Node.VTEPMAC != "02:00:00:00:00:01" || ev.Node.Registered.IsZero() {
		t.Errorf("registered node: %+v", *ev.Node)
	}
	// Alive beyond several TTLs: the keep-alive works.
	time.Sleep(2 * testTTL)
	if _, ok := nodeNames(t, watcher)["n1"]; !ok {
		t.Fatalf("n1 expired although its store is open")
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	nextEvent(t, events, testTTL+3*time.Second, "n1 goes", isNode(cluster.EventDelete, "n1"))
	took := time.Since(closed)
	t.Logf("n1 gone %s after its store closed (TTL %s)", took.Round(time.Millisecond), testTTL)
	if took > testTTL+2*time.Second {
		t.Errorf("n1 gone after %s, TTL %s", took, testTTL)
	}
	if _, ok := nodeNames(t, watcher)["n1"]; ok {
		t.Fatal("n1 still listed")
	}
	// A closed store refuses work instead of starting it.
	if _, ok := <-a.Watch(ctxT(t)); ok {
		t.Error("watch of a closed store delivered an event")
	}
	if err := a.Register(ctxT(t), node("n1", "192.0.2.1", "02:00:00:00:00:01")); err == nil {
		t.Error("register on a closed store succeeded")
	}
	if err := a.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}

	// The node comes back on another address and MAC (a new process).
	b := open(t, srv, "b")
	register(t, b, node("n1", "2001:db8::1", "02:00:00:00:00:AA"))
	ev = nextEvent(t, events, 5*time.Second, "n1 back", isNode(cluster.EventPut, "n1"))
	if ev.Node.Underlay != netip.MustParseAddr("2001:db8::1") || ev.Node.VTEPMAC != "02:00:00:00:00:aa" {
		t.Errorf("n1 came back as %+v", *ev.Node)
	}
	// The same store changes the record again: still one node, new values.
	register(t, b, node("n1", "198.51.100.7", "02:00:00:00:00:bb"))
	ev = nextEvent(t, events, 5*time.Second, "n1 changed", isNode(cluster.EventPut, "n1"))
	got := nodeNames(t, watcher)
	if len(got) != 1 || got["n1"].Underlay != netip.MustParseAddr("198.51.100.7") || ev.Node.VTEPMAC != "02:00:00:00:00:bb" {
		t.Errorf("after the change: nodes %+v, event %+v", got, *ev.Node)
	}
	if err := b.Register(ctxT(t), node("n2", "192.0.2.2", "02:00:00:00:00:02")); err == nil {
		t.Error("a store registered a second node name")
	}

	// Deregister removes the record at once, not at the end of the TTL.
	start := time.Now()
	if err := b.Deregister(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, ok := nodeNames(t, watcher)["n1"]; ok {
		t.Fatal("n1 still listed right after Deregister")
	}
	nextEvent(t, events, 5*time.Second, "n1 deregistered", isNode(cluster.EventDelete, "n1"))
	t.Logf("deregistration seen after %s", time.Since(start).Round(time.Millisecond))
	if err := b.Deregister(ctxT(t)); err != nil {
		t.Errorf("second deregister: %v", err)
	}
}

// leaseOf is the lease a node's record is attached to.
func leaseOf(t *testing.T, c *clientv3.Client, s *cluster.Store, name string) clientv3.LeaseID {
	t.Helper()
	resp, err := c.Get(ctxT(t), s.Prefix()+"nodes/"+name)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// TestLeaseLost: when the lease is revoked behind the store's back, the
// node registers again by itself.
func TestLeaseLost(t *testing.T) {
	srv := etcdtest.New(t)
	raw := srv.Client()
	s := open(t, srv, "a")
	register(t, s, node("n1", "192.0.2.1", "02:00:00:00:00:01"))
	old := leaseOf(t, raw, s, "n1")
	if old == 0 {
		t.Fatal("n1 has no lease")
	}
	if _, err := raw.Revoke(ctxT(t), old); err != nil {
		t.Fatal(err)
	}
	if leaseOf(t, raw, s, "n1") != 0 {
		t.Fatal("revoking the lease did not remove the record")
	}
	took := eventually(t, testTTL+3*time.Second, "n1 registers again", func() bool {
		l := leaseOf(t, raw, s, "n1")
		return l != 0 && l != old
	})
	t.Logf("registered again %s after its lease was revoked", took.Round(time.Millisecond))
	if n := nodeNames(t, s)["n1"]; n.Underlay != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("re-registered as %+v", n)
	}
}

// TestPolicy stores, reads, watches and deletes a policy document.
func TestPolicy(t *testing.T) {
	srv := etcdtest.New(t)
	s := open(t, srv, "a")
	ctx := ctxT(t)
	if _, err := s.Policy(ctx, "prod"); !isNotFound(err) {
		t.Fatalf("policy of a network without one: %v", err)
	}
	events := s.Watch(ctx)
	doc := []byte("zones:\n  frontend: {}\n")
	rev, err := s.PutPolicy(ctx, "prod", doc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Policy(ctx, "prod")
	if err != nil || string(p.Doc) != string(doc) || p.Revision != rev || p.Network != "prod" {
		t.Fatalf("policy: %+v %v (put at revision %d)", p, err, rev)
	}
	isPolicy := func(typ cluster.EventType) func(cluster.Event) bool {
		return func(ev cluster.Event) bool { return ev.Type == typ && ev.Policy != nil && ev.Policy.Network == "prod" }
	}
	if ev := nextEvent(t, events, 5*time.Second, "policy put", isPolicy(cluster.EventPut)); string(ev.Policy.Doc) != string(doc) {
		t.Errorf("watched policy %q", ev.Policy.Doc)
	}
	if err := s.DeletePolicy(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, 5*time.Second, "policy delete", isPolicy(cluster.EventDelete))
	if _, err := s.Policy(ctx, "prod"); !isNotFound(err) {
		t.Fatalf("deleted policy: %v", err)
	}
	if _, err := s.PutPolicy(ctx, "a/b", doc); err == nil {
		t.Error("policy of network a/b stored")
	}
	if _, err := s.PutPolicy(ctx, "prod", nil); err == nil {
		t.Error("empty policy stored")
	}
}

func isNotFound(err error) bool { return errors.Is(err, cluster.ErrNotFound) }
