package ipam

// # Blocks (cluster mode)
//
// With store etcd every node has the whole subnet of a zone on its bridge
// (the same gateway address on every node, never handed out), but hands
// out addresses only from the blocks of that subnet it claimed, e.g. /26s
// of a /24. zonenetd claims a block in etcd with compare-and-swap and
// records it here; ADD allocates inside the recorded blocks in its one
// store transaction, so the hot path never waits on etcd, and two nodes
// never hand out the same address because they never own the same block.
//
// What a block costs: on every other node one route (the block via the
// overlay; more specific than the zone's connected subnet, so it wins),
// and nothing per container. The overlay's neighbor and FDB entries are
// per remote node (its VTEP), not per block or container. On the node
// itself the bridge answers ARP for addresses of remote blocks (proxy
// ARP), so a container resolves every remote peer to its bridge's MAC:
// one neighbor entry per peer it talks to, inside its own namespace.
// Smaller blocks waste fewer addresses on a node with few containers and
// cost more routes everywhere; /26 (64 addresses) is the default.
//
// Allocation reuses the allocator of one pool: the assignable range is
// cut down to its intersections with the zone's blocks (segments), and
// the round-robin cursor walks the segments in address order, wrapping
// once. Gateway, exclusions and range apply as in local mode.

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	bolt "go.etcd.io/bbolt"
)

var (
	// ErrBlocksFull means a pool of the zone has no free address in the
	// blocks this node owns, or the node owns none of that family yet:
	// another block must be claimed. It is not ErrExhausted: the zone as
	// a whole may well have room.
	ErrBlocksFull = errors.New("no free address in this node's blocks")
	// ErrBlockInUse means a block still holds leases.
	ErrBlockInUse = errors.New("block in use")
	// ErrBlockOverlap means a block overlaps another block of the network.
	ErrBlockOverlap = errors.New("block overlaps another block")
)

// BlocksFullError names the pool whose blocks are full and the blocks that
// were searched (none when the node has no block of the pool yet).
// errors.Is(err, ErrBlocksFull) holds for it.
type BlocksFullError struct {
	Network string
	Zone    string
	Subnet  netip.Prefix
	Blocks  []netip.Prefix
}

func (e *BlocksFullError) Error() string {
	if len(e.Blocks) == 0 {
		return fmt.Sprintf("zone %s (%s) of network %s has no block on this node yet", e.Zone, e.Subnet, e.Network)
	}
	return fmt.Sprintf("the blocks %v of zone %s (%s) of network %s on this node have no free address",
		e.Blocks, e.Zone, e.Subnet, e.Network)
}

func (e *BlocksFullError) Unwrap() error { return ErrBlocksFull }

// BlockInUseError refuses to drop a block that still holds leases: the
// cluster could give it to another node, which would hand the addresses
// out a second time.
type BlockInUseError struct {
	Network, Zone string
	Block         netip.Prefix
	Leases        int
}

func (e *BlockInUseError) Error() string {
	return fmt.Sprintf("block %s of zone %s of network %s still holds %d leases", e.Block, e.Zone, e.Network, e.Leases)
}

func (e *BlockInUseError) Unwrap() error { return ErrBlockInUse }

// AddBlock records that this node owns block p of the zone. Adding a block
// the zone already has is a no-op; a block that overlaps any other block
// of the network is refused.
func (s *Store) AddBlock(network, zone string, p netip.Prefix) error {
	p, err := checkBlock(network, zone, p)
	if err != nil {
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		nb, err := writeNet(tx, network)
		if err != nil {
			return err
		}
		c := nb.blocks.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			z, q, err := decodeBlockKey(k)
			if err != nil {
				return fmt.Errorf("store %s: network %s: block key %q: %w: %w", s.path, network, k, ErrCorrupt, err)
			}
			if !q.Overlaps(p) {
				continue
			}
			if q == p && z == zone {
				return nil
			}
			return fmt.Errorf("%w: %s of zone %s", ErrBlockOverlap, q, z)
		}
		return nb.blocks.Put(blockKey(zone, p), []byte(p.String()))
	})
	if err != nil {
		return fmt.Errorf("add block %s to zone %s of network %s: %w", p, zone, network, err)
	}
	return nil
}

// Blocks returns the blocks of the zone this node owns, IPv4 first, each
// family in address order.
func (s *Store) Blocks(network, zone string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := s.view(func(tx *bolt.Tx) error {
		nb, ok := readNet(tx, network)
		if !ok {
			return nil
		}
		var err error
		out, err = zoneBlocks(nb.blocks, zone)
		if err != nil {
			return fmt.Errorf("store %s: network %s: %w", s.path, network, err)
		}
		return nil
	})
	return out, err
}

// RemoveBlock forgets block p of the zone; a block the zone does not have
// is not an error. A block that still holds leases is refused with a
// *BlockInUseError.
func (s *Store) RemoveBlock(network, zone string, p netip.Prefix) error {
	p, err := checkBlock(network, zone, p)
	if err != nil {
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		nb, ok := readNet(tx, network)
		if !ok || nb.blocks == nil || nb.blocks.Get(blockKey(zone, p)) == nil {
			return nil
		}
		n := 0
		c := nb.ip.Cursor()
		last := lastAddr(p)
		for k, _ := c.Seek(ipKey(p.Addr())); k != nil; k, _ = c.Next() {
			a, ok := decodeIPKey(k)
			if !ok || a.Is4() != last.Is4() || a.Compare(last) > 0 {
				break
			}
			n++
		}
		if n > 0 {
			return &BlockInUseError{Network: network, Zone: zone, Block: p, Leases: n}
		}
		return nb.blocks.Delete(blockKey(zone, p))
	})
	if err != nil {
		return fmt.Errorf("remove block %s of zone %s of network %s: %w", p, zone, network, err)
	}
	return nil
}

func checkBlock(network, zone string, p netip.Prefix) (netip.Prefix, error) {
	switch {
	case network == "":
		return p, errors.New("block: empty network name")
	case zone == "":
		return p, errors.New("block: empty zone name")
	case !p.IsValid() || p.Addr().Zone() != "":
		return p, fmt.Errorf("block %q is not a valid prefix", p)
	case p.Addr().Is4In6():
		return p, fmt.Errorf("block %s is IPv4-mapped; use the IPv4 form", p)
	case p.Masked() != p:
		return p, fmt.Errorf("block %s has host bits set", p)
	}
	return p, nil
}

// blockKey sorts a zone's blocks together, by family and then address.
func blockKey(zone string, p netip.Prefix) []byte {
	k := encodeTuple(zone)
	k = append(k, ipKey(p.Addr())...)
	return append(k, byte(p.Bits()))
}

// decodeBlockKey is the strict inverse of blockKey.
func decodeBlockKey(b []byte) (string, netip.Prefix, error) {
	end := -1
	for i := 0; i+1 < len(b); i++ {
		if b[i] != escByte {
			continue
		}
		if b[i+1] == escEnd {
			end = i + 2
			break
		}
		i++ // an escaped 0x00; decodeTuple checks it below
	}
	if end < 0 || len(b)-end < 2 {
		return "", netip.Prefix{}, errBadTuple
	}
	f, err := decodeTuple(b[:end])
	if err != nil || len(f) != 1 {
		return "", netip.Prefix{}, errBadTuple
	}
	a, ok := decodeIPKey(b[end : len(b)-1])
	bits := int(b[len(b)-1])
	if !ok || bits > a.BitLen() {
		return "", netip.Prefix{}, errBadTuple
	}
	p := netip.PrefixFrom(a, bits)
	if p.Masked() != p {
		return "", netip.Prefix{}, errBadTuple
	}
	return f[0], p, nil
}

// zoneBlocks lists the zone's blocks in key order; b may be nil.
func zoneBlocks(b *bolt.Bucket, zone string) ([]netip.Prefix, error) {
	if b == nil {
		return nil, nil
	}
	var out []netip.Prefix
	pfx := encodeTuple(zone)
	c := b.Cursor()
	for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Next() {
		z, p, err := decodeBlockKey(k)
		if err != nil || z != zone {
			return nil, fmt.Errorf("block key %q: %w: %w", k, ErrCorrupt, errBadTuple)
		}
		out = append(out, p)
	}
	return out, nil
}

// seg is a part of a span's assignable range, inclusive.
type seg struct{ first, last netip.Addr }

// segments are the span's assignable range; in cluster mode only its
// intersections with the blocks, in address order.
func (s *span) segments(blocks []netip.Prefix, inBlocks bool) []seg {
	if s.empty() {
		return nil
	}
	if !inBlocks {
		return []seg{{s.first, s.last}}
	}
	var out []seg
	for _, b := range blocks {
		if b.Addr().Is4() != s.first.Is4() || !s.subnet.Overlaps(b) {
			continue
		}
		f, l := b.Addr(), lastAddr(b)
		if f.Compare(s.first) < 0 {
			f = s.first
		}
		if l.Compare(s.last) > 0 {
			l = s.last
		}
		if f.Compare(l) <= 0 {
			out = append(out, seg{f, l})
		}
	}
	slices.SortFunc(out, func(a, b seg) int { return a.first.Compare(b.first) })
	return out
}

// blocksIn are the blocks of the span's family inside its subnet, for
// messages and static checks.
func (s *span) blocksIn(blocks []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, b := range blocks {
		if b.Addr().Is4() == s.subnet.Addr().Is4() && s.subnet.Overlaps(b) {
			out = append(out, b)
		}
	}
	return out
}
