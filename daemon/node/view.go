package node

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/overlay"
)

// view is this node's picture of the cluster, built from the watch's
// events. It changes only on events: a watch that breaks reports nothing,
// so the picture (and the overlay made from it) stays as it was until etcd
// answers again and the watch reports the difference.
type view struct {
	nodes  map[string]cluster.Node
	blocks map[blockID]cluster.Block
	// synced is set by the first EventSynced: until then the picture may
	// be partial, and programming it would remove peers that are alive.
	synced bool
	rev    int64
}

type blockID struct {
	network string
	prefix  netip.Prefix
}

func newView() *view {
	return &view{nodes: map[string]cluster.Node{}, blocks: map[blockID]cluster.Block{}}
}

// apply records one event and says whether the peers may have changed.
// Policies are not part of the overlay.
func (v *view) apply(ev cluster.Event) bool {
	if ev.Revision > v.rev {
		v.rev = ev.Revision
	}
	switch {
	case ev.Type == cluster.EventSynced:
		first := !v.synced
		v.synced = true
		return first
	case ev.Node != nil:
		if ev.Type == cluster.EventDelete {
			delete(v.nodes, ev.Node.Name)
		} else {
			v.nodes[ev.Node.Name] = *ev.Node
		}
		return true
	case ev.Block != nil:
		id := blockID{ev.Block.Network, ev.Block.Prefix}
		if ev.Type == cluster.EventDelete {
			delete(v.blocks, id)
		} else {
			v.blocks[id] = *ev.Block
		}
		return true
	}
	return false
}

// peers are the other live nodes with their blocks of the served networks,
// sorted by name. Blocks of nodes that are not registered are left out:
// their owner is down, and its blocks wait for it or for ReclaimDead. A
// node whose record cannot be programmed is left out and reported.
func (v *view) peers(self string, served map[string]bool) ([]overlay.Peer, []error) {
	byNode := map[string][]netip.Prefix{}
	for _, b := range v.blocks {
		if served[b.Network] {
			byNode[b.Node] = append(byNode[b.Node], b.Prefix)
		}
	}
	var out []overlay.Peer
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(v.nodes)) {
		if name == self {
			continue
		}
		n := v.nodes[name]
		mac, err := net.ParseMAC(n.VTEPMAC)
		if err != nil || len(mac) != 6 {
			errs = append(errs, fmt.Errorf("node %s: VTEP MAC %q is not an Ethernet address", name, n.VTEPMAC))
			continue
		}
		if !n.Underlay.Is4() {
			errs = append(errs, fmt.Errorf("node %s: underlay %s is not IPv4; the overlay runs over IPv4", name, n.Underlay))
			continue
		}
		blocks := byNode[name]
		slices.SortFunc(blocks, comparePrefix)
		out = append(out, overlay.Peer{Name: name, Underlay: n.Underlay, VTEPMAC: mac, Blocks: blocks})
	}
	return out, errs
}

// ownBlocks are the blocks of this node in the served networks.
func (v *view) ownBlocks(self string, served map[string]bool) []cluster.Block {
	var out []cluster.Block
	for _, b := range v.blocks {
		if b.Node == self && served[b.Network] {
			out = append(out, b)
		}
	}
	sortBlocks(out)
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func sortBlocks(bs []cluster.Block) {
	slices.SortFunc(bs, func(a, b cluster.Block) int {
		if c := strings.Compare(a.Network, b.Network); c != 0 {
			return c
		}
		return comparePrefix(a.Prefix, b.Prefix)
	})
}

// peersEqual compares two peer lists as the overlay sees them.
func peersEqual(a, b []overlay.Peer) bool {
	return slices.EqualFunc(a, b, func(x, y overlay.Peer) bool {
		return x.Name == y.Name && x.Underlay == y.Underlay && x.VTEPMAC.String() == y.VTEPMAC.String() &&
			slices.Equal(x.Blocks, y.Blocks)
	})
}
