package cluster_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/test/etcdtest"
)

// testTTL is the smallest lease etcd grants with its default timing.
const testTTL = 2 * time.Second

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// open opens a Store on srv as the client name; mods adjust the config.
// The Store is closed when the test ends.
func open(t *testing.T, srv *etcdtest.Server, name string, mods ...func(*cluster.Config)) *cluster.Store {
	t.Helper()
	cfg := cluster.Config{
		Endpoints:      srv.Endpoints(),
		TLS:            srv.ClientTLS(name),
		NodeTTL:        testTTL,
		DialTimeout:    5 * time.Second,
		RequestTimeout: 10 * time.Second,
		Logf:           func(f string, a ...any) { t.Logf("%s: %s", name, fmt.Sprintf(f, a...)) },
	}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := cluster.Open(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("open store %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store %s: %v", name, err)
		}
	})
	return s
}

func node(name, underlay, mac string) cluster.Node {
	return cluster.Node{Name: name, Underlay: netip.MustParseAddr(underlay), VTEPMAC: mac}
}

func register(t *testing.T, s *cluster.Store, n cluster.Node) {
	t.Helper()
	if err := s.Register(ctxT(t), n); err != nil {
		t.Fatalf("register %s: %v", n.Name, err)
	}
}

// nodeNames lists the registered nodes' names.
func nodeNames(t *testing.T, s *cluster.Store) map[string]cluster.Node {
	t.Helper()
	nodes, _, err := s.Nodes(ctxT(t))
	if err != nil {
		t.Fatalf("nodes: %v", err)
	}
	out := map[string]cluster.Node{}
	for _, n := range nodes {
		out[n.Name] = n
	}
	return out
}

// eventually polls cond every 100 ms until it holds or timeout passes, and
// returns how long it took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// nextEvent waits for the first event that match accepts, skipping others.
func nextEvent(t *testing.T, ch <-chan cluster.Event, timeout time.Duration, what string, match func(cluster.Event) bool) cluster.Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("%s: watch channel closed", what)
			}
			if match(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("%s: no such event within %s", what, timeout)
		}
	}
}

func isNode(typ cluster.EventType, name string) func(cluster.Event) bool {
	return func(ev cluster.Event) bool { return ev.Type == typ && ev.Node != nil && ev.Node.Name == name }
}

func req(network, zone, subnet string, bits int, nodeName string) cluster.BlockRequest {
	return cluster.BlockRequest{Network: network, Zone: zone, Subnet: netip.MustParsePrefix(subnet), BlockBits: bits, Node: nodeName}
}

func clientPrefix() clientv3.OpOption { return clientv3.WithPrefix() }

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
