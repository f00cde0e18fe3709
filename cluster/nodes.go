package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// registration is the node this Store keeps registered.
type registration struct {
	name   string // of the node, never changes
	cancel context.CancelFunc
	done   chan struct{}

	// writing is held while the record is written, so that the
	// background re-registration and a new Register never interleave.
	// It is a channel so that waiting for it is bounded by a context.
	writing chan struct{}

	mu    sync.Mutex // guards node and lease
	node  Node
	lease clientv3.LeaseID // the lease the record is attached to now
}

func (r *registration) acquire(ctx context.Context) error {
	select {
	case r.writing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *registration) release() { <-r.writing }

func (r *registration) get() (Node, clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.node, r.lease
}

func (r *registration) set(n Node, lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.node, r.lease = n, lease
}

func (r *registration) leaseID() clientv3.LeaseID {
	_, lease := r.get()
	return lease
}

// Register writes n's record under a lease of NodeTTL and keeps the lease
// alive in the background until Deregister or Close. If the lease is lost
// (etcd was unreachable for longer than the TTL, or someone revoked it),
// the record is written again under a new lease as soon as etcd answers.
// Registering again replaces the record (a changed underlay address or
// MAC) under the same lease; a Store registers one node name only.
func (s *Store) Register(ctx context.Context, n Node) error {
	n, err := checkNode(n)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if n.Registered.IsZero() {
		n.Registered = time.Now()
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if r := s.reg; r != nil {
		if r.name != n.Name {
			return fmt.Errorf("register node %s: this store already registers node %s", n.Name, r.name)
		}
		// The wait for a background re-registration counts against the
		// request timeout too.
		ctx, cancel := s.op(ctx)
		defer cancel()
		if err := r.acquire(ctx); err != nil {
			return fmt.Errorf("register node %s: waiting for the background registration: %w", n.Name, err)
		}
		defer r.release()
		lease, err := s.putNode(ctx, n, r.leaseID())
		if err != nil {
			return err
		}
		r.set(n, lease)
		return nil
	}
	lease, err := s.putNode(ctx, n, 0)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(s.ctx)
	r := &registration{name: n.Name, node: n, lease: lease, cancel: cancel, done: make(chan struct{}), writing: make(chan struct{}, 1)}
	if !s.spawn(func() { s.keepRegistered(rctx, r) }) {
		cancel()
		return fmt.Errorf("register node %s: %w", n.Name, errClosed)
	}
	s.reg = r
	return nil
}

// putNode writes the node's record under lease, or under a new lease if
// lease is 0 or has expired, and returns the lease used. The node's "gone
// since" marker goes in the same transaction: a node that is back is not
// dead.
func (s *Store) putNode(ctx context.Context, n Node, lease clientv3.LeaseID) (clientv3.LeaseID, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	what := "register node " + n.Name
	rec := encode(nodeRecord{V: recordVersion, Underlay: n.Underlay, VTEPMAC: n.VTEPMAC, Registered: n.Registered.UTC()})
	for {
		granted := lease == 0
		if granted {
			g, err := s.cli.Grant(ctx, int64(math.Ceil(s.cfg.NodeTTL.Seconds())))
			if err != nil {
				return 0, s.wrap(ctx, what+": grant lease", err)
			}
			lease = g.ID
		}
		_, err := s.cli.Txn(ctx).Then(
			clientv3.OpPut(s.keys.node(n.Name), rec, clientv3.WithLease(lease)),
			clientv3.OpDelete(s.keys.gone(n.Name)),
		).Commit()
		if err == nil {
			return lease, nil
		}
		if granted {
			s.revokeQuietly(ctx, lease)
		} else if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			lease = 0 // expired meanwhile: take a new one
			continue
		}
		return 0, s.wrap(ctx, what, err)
	}
}

// keepRegistered keeps r's lease alive and registers again whenever it is
// lost, until ctx ends.
func (s *Store) keepRegistered(ctx context.Context, r *registration) {
	defer close(r.done)
	for {
		lease := r.leaseID()
		// The channel closes when the lease expired, when etcd did not
		// answer within the TTL, or when ctx ends.
		ch, err := s.cli.KeepAlive(ctx, lease)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		if r.leaseID() != lease {
			continue // Register moved the record to a new lease already
		}
		if err == nil {
			err = errors.New("expired, or etcd did not answer within the TTL")
		}
		s.logf("cluster: lease %x of node %s lost (%v); registering again", lease, r.name, err)
		if !s.reregister(ctx, r) {
			return
		}
		// After an etcd restart the old lease may live on for one more
		// TTL; it holds no key now.
		s.revokeQuietly(ctx, lease)
	}
}

// reregister writes r's record under a new lease, retrying until etcd
// answers or ctx ends.
func (s *Store) reregister(ctx context.Context, r *registration) bool {
	delay := 100 * time.Millisecond
	for {
		if r.acquire(ctx) != nil {
			return false
		}
		n, _ := r.get()
		n.Registered = time.Now() // since when this record is there
		id, err := s.putNode(ctx, n, 0)
		if err == nil {
			r.set(n, id)
		}
		r.release()
		if err == nil {
			s.logf("cluster: node %s registered again under lease %x", r.name, id)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.logf("cluster: %v; retrying in %s", err, delay)
		if !sleep(ctx, delay) {
			return false
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// revokeQuietly gives up a lease that holds nothing; if etcd does not
// answer, the lease expires by itself.
func (s *Store) revokeQuietly(ctx context.Context, lease clientv3.LeaseID) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, _ = s.cli.Revoke(ctx, lease)
}

// Deregister removes the node's record at once and stops keeping it alive.
// If etcd cannot be reached the error says so, and the record still
// disappears when its lease expires.
func (s *Store) Deregister(ctx context.Context) error {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	r := s.reg
	if r == nil {
		return nil
	}
	s.reg = nil
	r.cancel()
	<-r.done
	ctx, cancel := s.op(ctx)
	defer cancel()
	// Revoking deletes exactly the keys attached to the lease: the record
	// if it is still ours, not one that another process wrote since.
	_, err := s.cli.Revoke(ctx, r.leaseID())
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return s.wrap(ctx, "deregister node "+r.name, err)
	}
	return nil
}

// Nodes lists the registered nodes by name, and the etcd revision of the
// list (a Watch from there misses nothing).
func (s *Store) Nodes(ctx context.Context) ([]Node, int64, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.nodes(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, s.wrap(ctx, "list nodes", err)
	}
	var out []Node
	for _, kv := range resp.Kvs {
		k, ok := s.keys.parse(string(kv.Key))
		if !ok || k.kind != kindNode {
			s.logf("cluster: ignoring key %q", kv.Key)
			continue
		}
		n, err := decodeNode(k.name, kv.Value)
		if err != nil {
			s.logf("cluster: ignoring unreadable record: %v", err)
			continue
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out, resp.Header.Revision, nil
}
