package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ReclaimDead frees the blocks of nodes that have been unregistered for
// longer than grace, and returns them.
//
// The first time a call sees a block owner without a registration, it
// writes a "gone since now" marker for that node (only if the node is
// still absent and has no marker), and later calls measure grace from it:
// the clock is that of the node that noticed, so grace should be well
// above the clock skew between nodes. A node that registers again clears
// its marker, and keeps its blocks if it came back within the grace.
// Each block is deleted by its own transaction, conditioned on the owner
// still being unregistered, on the block record being unchanged since it
// was read and on the marker being the one grace was measured from; any
// number of nodes may run ReclaimDead at once.
func (s *Store) ReclaimDead(ctx context.Context, grace time.Duration, now time.Time) ([]Block, error) {
	const what = "reclaim blocks of dead nodes"
	ctx, cancel := s.op(ctx)
	defer cancel()
	// One snapshot of nodes, markers and blocks at a single revision.
	snap, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.keys.nodes(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(s.keys.gones(), clientv3.WithPrefix()),
		clientv3.OpGet(s.keys.allBlocks(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, s.wrap(ctx, what, err)
	}
	present := map[string]bool{}
	for _, kv := range snap.Responses[0].GetResponseRange().Kvs {
		if k, ok := s.keys.parse(string(kv.Key)); ok && k.kind == kindNode {
			present[k.name] = true
		}
	}
	type marker struct {
		since time.Time
		rev   int64
	}
	markers := map[string]marker{}
	for _, kv := range snap.Responses[1].GetResponseRange().Kvs {
		k, ok := s.keys.parse(string(kv.Key))
		if !ok || k.kind != kindGone {
			continue
		}
		var r goneRecord
		if err := decode(kv.Value, &r, &r.V); err != nil {
			s.logf("cluster: unreadable marker %q: %v; writing it again", kv.Key, err)
			r.Since = now // restarts the grace: never frees early
		}
		markers[k.name] = marker{since: r.Since, rev: kv.ModRevision}
	}
	type owned struct {
		b  Block
		kv *mvccpb.KeyValue
	}
	byOwner := map[string][]owned{}
	for _, kv := range snap.Responses[2].GetResponseRange().Kvs {
		k, ok := s.keys.parse(string(kv.Key))
		if !ok || k.kind != kindBlock {
			continue
		}
		b, err := decodeBlock(k.network, k.prefix, kv.Value)
		if err != nil {
			s.logf("cluster: reclaim: %v", err)
			continue
		}
		byOwner[b.Node] = append(byOwner[b.Node], owned{b, kv})
	}

	var freed []Block
	var errs []error
	freedOf := map[string]int{}
	absent := func(name string) clientv3.Cmp {
		return clientv3.Compare(clientv3.CreateRevision(s.keys.node(name)), "=", 0)
	}
	for _, name := range slices.Sorted(maps.Keys(markers)) {
		if m := markers[name]; present[name] {
			// Back (registration clears the marker; this is for markers of
			// older versions or races): forget it.
			if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.keys.gone(name)), "=", m.rev)).
				Then(clientv3.OpDelete(s.keys.gone(name))).Commit(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byOwner)) {
		if present[name] {
			continue
		}
		m, ok := markers[name]
		if !ok {
			_, err := s.cli.Txn(ctx).If(absent(name), clientv3.Compare(clientv3.CreateRevision(s.keys.gone(name)), "=", 0)).
				Then(clientv3.OpPut(s.keys.gone(name), encode(goneRecord{V: recordVersion, Since: now.UTC()}))).Commit()
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if now.Sub(m.since) <= grace {
			continue
		}
		for _, o := range byOwner[name] {
			key := string(o.kv.Key)
			tx, err := s.cli.Txn(ctx).If(
				absent(name),
				clientv3.Compare(clientv3.ModRevision(key), "=", o.kv.ModRevision),
				clientv3.Compare(clientv3.ModRevision(s.keys.gone(name)), "=", m.rev),
			).Then(clientv3.OpDelete(key)).Commit()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if tx.Succeeded {
				freed = append(freed, o.b)
				freedOf[name]++
			}
		}
	}
	// Markers of nodes that are absent and own nothing any more have done
	// their job. A node without blocks needs no marker.
	for _, name := range slices.Sorted(maps.Keys(markers)) {
		m := markers[name]
		if present[name] || freedOf[name] < len(byOwner[name]) {
			continue
		}
		if _, err := s.cli.Txn(ctx).If(absent(name), clientv3.Compare(clientv3.ModRevision(s.keys.gone(name)), "=", m.rev)).
			Then(clientv3.OpDelete(s.keys.gone(name))).Commit(); err != nil {
			errs = append(errs, err)
		}
	}
	sortBlocks(freed)
	if len(errs) > 0 {
		return freed, s.wrap(ctx, what, fmt.Errorf("%d of the transactions failed, first: %w", len(errs), errs[0]))
	}
	return freed, nil
}
