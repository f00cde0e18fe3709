package node

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/overlay"
)

// follower programs the overlay from the watch. One goroutine owns it:
// Reconcile calls for one device must not overlap.
type follower struct {
	d    *Daemon
	v    *view
	last []overlay.Peer // what the last Reconcile was given
	// lastErr and lastPeerErr keep a failure that repeats on every
	// resync to one log line; problems does the same for the blocks.
	lastErr, lastPeerErr string
	problems             map[string]bool
	blocksSynced         bool
}

// follow watches nodes and blocks and reconciles the overlay on every
// change, and every resync interval to repair drift (an entry deleted by
// hand, a device recreated by someone). Before the watch's first complete
// listing nothing is reconciled: a partial list would remove live peers.
// When etcd is unreachable the watch reports nothing, so the overlay stays
// as it is; the resync then only repairs the kernel towards the last
// known picture.
func (d *Daemon) follow(ctx context.Context, store *cluster.Store) {
	f := &follower{d: d, v: newView(), problems: map[string]bool{}}
	events := store.Watch(ctx)
	resync := time.NewTicker(d.cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			changed := f.take(ev)
			// Take whatever else is already queued: a burst of events
			// (a relist, a node with its blocks) costs one Reconcile.
		drain:
			for {
				select {
				case ev, ok := <-events:
					if !ok {
						return
					}
					changed = f.take(ev) || changed
				default:
					break drain
				}
			}
			if changed && f.v.synced {
				f.reconcile("change")
			}
			if f.v.synced && !f.blocksSynced {
				f.syncBlocks()
			}
			if f.v.synced {
				f.d.pol.listed()
			}
		case <-resync.C:
			f.repairDevice()
			if f.v.synced {
				f.reconcile("resync")
				f.syncBlocks()
			}
		}
	}
}

// take records one event in the picture, and hands policies to the
// policy server.
func (f *follower) take(ev cluster.Event) bool {
	if ev.Policy != nil {
		f.d.pol.offer(ev)
	}
	return f.v.apply(ev)
}

// syncBlocks brings the node store in line with the cluster's blocks of
// this node. The first time (before any claim is let through) it may
// forget blocks that are no longer this node's; then claims may start.
func (f *follower) syncBlocks() {
	first := !f.blocksSynced
	problems, err := f.d.syncLocalBlocks(f.v, first)
	if err != nil {
		f.d.log.Warn("compare this node's blocks with the cluster", "err", err)
		if !first {
			return
		}
	}
	seen := map[string]bool{}
	for _, p := range problems {
		seen[p] = true
		if !f.problems[p] {
			f.d.log.Error(p)
		}
	}
	f.problems = seen
	if first {
		f.blocksSynced = true
		close(f.d.ready)
	}
}

// repairDevice ensures the device and the guard again; both write nothing
// when they are right.
func (f *follower) repairDevice() {
	d := f.d
	dev, ch, err := d.dp.repair()
	if errors.Is(err, acl.ErrLockTimeout) {
		return // plugin execs hold the host's iptables: next round
	}
	d.st.dataplane(err)
	if err != nil {
		return
	}
	if len(ch) > 0 {
		d.log.Warn("overlay device repaired", "changes", ch.String())
	}
	d.dev = dev
	d.st.setMTU(dev.MTU)
}

// reconcile programs the peers of the current picture.
func (f *follower) reconcile(why string) {
	d := f.d
	peers, perrs := f.v.peers(d.cfg.NodeName, d.served)
	if msg := errors.Join(perrs...); msg != nil && msg.Error() != f.lastPeerErr {
		f.lastPeerErr = msg.Error()
		d.log.Warn("nodes left out of the overlay", "err", msg)
	} else if msg == nil {
		f.lastPeerErr = ""
	}
	start := time.Now()
	ch, err := d.dp.reconcile(peers)
	d.st.reconciled(len(peers), len(ch), err)
	d.st.setBlocks(f.v.ownBlocks(d.cfg.NodeName, d.served), f.v.blocks, d.served)
	f.logPeerChanges(peers)
	if len(ch) > 0 {
		d.log.Info("overlay reconciled", "why", why, "peers", len(peers), "changes", ch.String(), "took", time.Since(start).Round(time.Microsecond))
	} else {
		d.log.Debug("overlay reconciled", "why", why, "peers", len(peers), "changes", 0)
	}
	switch {
	case err != nil && err.Error() != f.lastErr:
		d.log.Warn("overlay reconcile", "err", err)
		f.lastErr = err.Error()
	case err == nil && f.lastErr != "":
		d.log.Info("overlay reconcile succeeds again")
		f.lastErr = ""
	}
	f.last = peers
}

// logPeerChanges says which peers joined, left or moved since the last
// Reconcile.
func (f *follower) logPeerChanges(peers []overlay.Peer) {
	if peersEqual(f.last, peers) {
		return
	}
	old := map[string]overlay.Peer{}
	for _, p := range f.last {
		old[p.Name] = p
	}
	for _, p := range peers {
		o, ok := old[p.Name]
		delete(old, p.Name)
		switch {
		case !ok:
			f.d.log.Info("peer added", "peer", p.Name, "underlay", p.Underlay, "vtep", p.VTEPMAC.String(), "blocks", p.Blocks)
		case !peersEqual([]overlay.Peer{o}, []overlay.Peer{p}):
			f.d.log.Info("peer changed", "peer", p.Name, "underlay", p.Underlay, "vtep", p.VTEPMAC.String(), "blocks", p.Blocks)
		}
	}
	for _, name := range sortedKeys(old) {
		f.d.log.Info("peer removed", "peer", name)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
