package cluster

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EventType says what happened to a record.
type EventType int

const (
	// EventPut: the record was created or changed.
	EventPut EventType = iota + 1
	// EventDelete: the record is gone; the event carries its last value.
	EventDelete
	// EventSynced: the events so far describe the whole state at
	// Revision. Sent after the first listing and after every re-listing;
	// what a consumer learnt before and was not told again since is still
	// true.
	EventSynced
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventSynced:
		return "synced"
	}
	return "unknown"
}

// Event is one change of a node, a block or a policy. Exactly one of Node,
// Block and Policy is set, except in EventSynced where none is.
type Event struct {
	Type     EventType
	Revision int64
	Node     *Node
	Block    *Block
	Policy   *Policy
}

// Watch reports the cluster's nodes, blocks and policies: first each one
// as an EventPut and an EventSynced, then every change as it happens. When
// the watch breaks in a way it cannot resume from (the revision it needs
// was compacted away, etcd lost its leader), it lists everything again and
// reports the difference with what it had reported, then EventSynced, so
// the consumer's picture stays right without starting over. The channel
// closes when ctx ends or the Store is closed; a consumer must keep
// reading until then.
func (s *Store) Watch(ctx context.Context) <-chan Event {
	out := make(chan Event, 64)
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	w := &watcher{s: s, out: out, view: map[string]viewItem{}}
	ok := s.spawn(func() {
		defer close(out)
		defer cancel()
		defer stop()
		w.run(wctx)
	})
	if !ok {
		stop()
		cancel()
		close(out)
	}
	return out
}

// watcher follows the prefix and remembers what it reported, by key.
type watcher struct {
	s    *Store
	out  chan<- Event
	view map[string]viewItem
	rev  int64 // the view is the state at rev; 0: list first
}

type viewItem struct {
	modRev int64
	ev     Event // the EventPut that reported the current value
}

func (w *watcher) run(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		if w.rev == 0 {
			if err := w.relist(ctx); err != nil {
				if ctx.Err() == nil {
					w.s.logf("cluster: watch: %v; listing again in %s", err, delay)
				}
				sleep(ctx, delay)
				delay = min(2*delay, 2*time.Second)
				continue
			}
			delay = 100 * time.Millisecond
		}
		err := w.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		w.s.logf("cluster: watch from revision %d ended: %v; listing again", w.rev+1, err)
		w.rev = 0
	}
}

// relist reads the whole prefix at one revision and reports what differs
// from the view.
func (w *watcher) relist(ctx context.Context) error {
	lctx, cancel := w.s.op(ctx)
	defer cancel()
	resp, err := w.s.cli.Get(lctx, w.s.keys.prefix, clientv3.WithPrefix())
	if err != nil {
		return w.s.wrap(lctx, "list the cluster state", err)
	}
	rev := resp.Header.Revision
	fresh := make(map[string]viewItem, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if it, ok := w.decode(kv); ok {
			fresh[string(kv.Key)] = it
		}
	}
	for _, key := range slices.Sorted(maps.Keys(w.view)) {
		if _, ok := fresh[key]; !ok && !w.drop(ctx, key, rev) {
			return ctx.Err()
		}
	}
	for _, key := range slices.Sorted(maps.Keys(fresh)) {
		it := fresh[key]
		if old, ok := w.view[key]; ok && old.modRev == it.modRev {
			continue
		}
		w.view[key] = it
		if !w.emit(ctx, it.ev) {
			return ctx.Err()
		}
	}
	w.rev = rev
	if !w.emit(ctx, Event{Type: EventSynced, Revision: rev}) {
		return ctx.Err()
	}
	return nil
}

// follow watches from w.rev+1 until the watch fails or ctx ends.
func (w *watcher) follow(ctx context.Context) error {
	// Without a leader, the member we talk to may be cut off from the
	// cluster and silently stale: better to fail and list again.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := w.s.cli.Watch(wctx, w.s.keys.prefix, clientv3.WithPrefix(), clientv3.WithRev(w.rev+1))
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return err // compaction included: its revision is gone
		}
		if resp.IsProgressNotify() {
			w.rev = max(w.rev, resp.Header.Revision)
			continue
		}
		for _, ev := range resp.Events {
			key, rev := string(ev.Kv.Key), ev.Kv.ModRevision
			ok := true
			if it, readable := w.decode(ev.Kv); ev.Type == mvccpb.PUT && readable {
				w.view[key] = it
				ok = w.emit(ctx, it.ev)
			} else {
				// Deleted, or replaced by something unreadable: either way
				// it is not there any more for the consumer.
				ok = w.drop(ctx, key, rev)
			}
			if !ok {
				return ctx.Err()
			}
			w.rev = rev
		}
	}
	return errors.New("watch channel closed")
}

// drop forgets key and reports its deletion if it had been reported.
func (w *watcher) drop(ctx context.Context, key string, rev int64) bool {
	it, ok := w.view[key]
	if !ok {
		return true
	}
	delete(w.view, key)
	ev := it.ev
	ev.Type, ev.Revision = EventDelete, rev
	return w.emit(ctx, ev)
}

func (w *watcher) emit(ctx context.Context, ev Event) bool {
	select {
	case w.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// decode turns a record the consumer cares about into its EventPut.
// Markers, subnet records and foreign keys are not reported.
func (w *watcher) decode(kv *mvccpb.KeyValue) (viewItem, bool) {
	if len(kv.Value) == 0 {
		return viewItem{}, false // a deletion's key-value
	}
	k, ok := w.s.keys.parse(string(kv.Key))
	if !ok {
		return viewItem{}, false
	}
	ev := Event{Type: EventPut, Revision: kv.ModRevision}
	var err error
	switch k.kind {
	case kindNode:
		var n Node
		n, err = decodeNode(k.name, kv.Value)
		ev.Node = &n
	case kindBlock:
		var b Block
		b, err = decodeBlock(k.network, k.prefix, kv.Value)
		ev.Block = &b
	case kindPolicy:
		ev.Policy = &Policy{Network: k.network, Doc: kv.Value, Revision: kv.ModRevision}
	default:
		return viewItem{}, false
	}
	if err != nil {
		w.s.logf("cluster: watch: ignoring unreadable record: %v", err)
		return viewItem{}, false
	}
	return viewItem{modRev: kv.ModRevision, ev: ev}, true
}
