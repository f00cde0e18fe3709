package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BlockRequest asks for a block of a zone's subnet for a node.
type BlockRequest struct {
	Network, Zone string
	Subnet        netip.Prefix // the zone's subnet (IPv4 or IPv6)
	BlockBits     int          // prefix length of a block, e.g. 26
	Node          string       // the owner
}

func (r BlockRequest) check() error {
	for _, n := range []struct{ what, v string }{{"network", r.Network}, {"zone", r.Zone}, {"node", r.Node}} {
		if err := checkName(n.v); err != nil {
			return fmt.Errorf("%s: %w", n.what, err)
		}
	}
	if err := normPrefix("subnet", r.Subnet); err != nil {
		return err
	}
	if r.BlockBits < r.Subnet.Bits() || r.BlockBits > r.Subnet.Addr().BitLen() {
		return fmt.Errorf("block size /%d does not fit subnet %s", r.BlockBits, r.Subnet)
	}
	return nil
}

// ClaimBlock gives req.Node the lowest free block of the subnet. The claim
// is one transaction that succeeds only if the block's key does not exist
// and the subnet's record is unchanged, so two nodes never own one block;
// a node that loses the race retries with the next free block. When the
// subnet is full the error is a *NoFreeBlockError (ErrNoFreeBlock).
//
// The first claim in a subnet records its zone and block size; a later
// claim that disagrees, or whose subnet overlaps another recorded subnet
// of the network, fails with ErrSubnetConflict.
//
// Claims of one Store run one at a time (waiting for a turn is bounded by
// ctx only); the request timeout bounds the claim's own work. If a claim
// times out it may still have succeeded: a node finds its blocks with
// Blocks.
func (s *Store) ClaimBlock(ctx context.Context, req BlockRequest) (Block, error) {
	what := fmt.Sprintf("claim a /%d block of %s (zone %s, network %s) for node %s", req.BlockBits, req.Subnet, req.Zone, req.Network, req.Node)
	if err := req.check(); err != nil {
		return Block{}, fmt.Errorf("%s: %w", what, err)
	}
	select {
	case s.claim <- struct{}{}:
		defer func() { <-s.claim }()
	case <-ctx.Done():
		return Block{}, fmt.Errorf("%s: waiting for the previous claim: %w", what, ctx.Err())
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	subRev, err := s.ensureSubnet(ctx, req)
	if err != nil {
		return Block{}, s.wrap(ctx, what, err)
	}
	subKey := s.keys.subnet(req.Network, req.Subnet)
	list, err := s.cli.Get(ctx, s.keys.blocks(req.Network), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return Block{}, s.wrap(ctx, what, err)
	}
	kvs := list.Kvs
	for {
		cand, ok := firstFree(req.Subnet, req.BlockBits, s.blockPrefixes(kvs))
		if !ok {
			return Block{}, &NoFreeBlockError{Network: req.Network, Zone: req.Zone, Subnet: req.Subnet, BlockBits: req.BlockBits}
		}
		b := Block{Network: req.Network, Zone: req.Zone, Prefix: cand, Node: req.Node}
		key := s.keys.block(req.Network, cand)
		rec := encode(blockRecord{V: recordVersion, Zone: req.Zone, Node: req.Node, Claimed: time.Now().UTC()})
		resp, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(subKey), "=", subRev),
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		).Then(
			clientv3.OpPut(key, rec),
		).Else(
			// Lost the race: the fresh state comes back with the answer.
			clientv3.OpGet(subKey, clientv3.WithKeysOnly()),
			clientv3.OpGet(s.keys.blocks(req.Network), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		).Commit()
		if err != nil {
			return Block{}, s.wrap(ctx, what, err)
		}
		if resp.Succeeded {
			return b, nil
		}
		sub := resp.Responses[0].GetResponseRange().Kvs
		if len(sub) != 1 || sub[0].ModRevision != subRev {
			return Block{}, fmt.Errorf("%s: the record of subnet %s changed during the claim: %w", what, req.Subnet, ErrSubnetConflict)
		}
		kvs = resp.Responses[1].GetResponseRange().Kvs
	}
}

// blockPrefixes are the blocks that exist, from their keys alone: a block
// whose record cannot be read is still not free.
func (s *Store) blockPrefixes(kvs []*mvccpb.KeyValue) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(kvs))
	for _, kv := range kvs {
		if k, ok := s.keys.parse(string(kv.Key)); ok && k.kind == kindBlock {
			out = append(out, k.prefix)
		} else {
			s.logf("cluster: ignoring key %q", kv.Key)
		}
	}
	return out
}

// ensureSubnet returns the mod revision of the subnet's record, writing it
// first if this is the subnet's first claim. The write is conditioned on
// no record of the network's subnets having changed since they were read,
// so two nodes with different configurations cannot both record
// overlapping subnets.
func (s *Store) ensureSubnet(ctx context.Context, req BlockRequest) (int64, error) {
	key := s.keys.subnet(req.Network, req.Subnet)
	all := s.keys.subnets(req.Network)
	for {
		resp, err := s.cli.Get(ctx, all, clientv3.WithPrefix())
		if err != nil {
			return 0, err
		}
		for _, kv := range resp.Kvs {
			k, ok := s.keys.parse(string(kv.Key))
			if !ok || k.kind != kindSubnet {
				s.logf("cluster: ignoring key %q", kv.Key)
				continue
			}
			if !k.prefix.Overlaps(req.Subnet) {
				continue
			}
			var r subnetRecord
			if err := decode(kv.Value, &r, &r.V); err != nil {
				return 0, fmt.Errorf("subnet %s: unreadable record: %w: %w", k.prefix, ErrSubnetConflict, err)
			}
			if k.prefix != req.Subnet {
				return 0, fmt.Errorf("subnet %s overlaps subnet %s of zone %s: %w", req.Subnet, k.prefix, r.Zone, ErrSubnetConflict)
			}
			if r.Zone != req.Zone || r.BlockBits != req.BlockBits {
				return 0, fmt.Errorf("subnet %s is recorded for zone %s with /%d blocks, not zone %s with /%d: %w",
					req.Subnet, r.Zone, r.BlockBits, req.Zone, req.BlockBits, ErrSubnetConflict)
			}
			return kv.ModRevision, nil
		}
		rec := encode(subnetRecord{V: recordVersion, Zone: req.Zone, BlockBits: req.BlockBits})
		tx, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(all), "<", resp.Header.Revision+1).WithPrefix(),
		).Then(clientv3.OpPut(key, rec)).Commit()
		if err != nil {
			return 0, err
		}
		if tx.Succeeded {
			return tx.Header.Revision, nil
		}
		// Another node recorded a subnet meanwhile; look again.
	}
}

// Blocks lists the blocks of a network in address order (IPv4 first).
func (s *Store) Blocks(ctx context.Context, network string) ([]Block, error) {
	if err := checkName(network); err != nil {
		return nil, fmt.Errorf("list blocks: network: %w", err)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.blocks(network), clientv3.WithPrefix())
	if err != nil {
		return nil, s.wrap(ctx, "list blocks of network "+network, err)
	}
	out := s.decodeBlocks(resp.Kvs)
	sortBlocks(out)
	return out, nil
}

func (s *Store) decodeBlocks(kvs []*mvccpb.KeyValue) []Block {
	out := make([]Block, 0, len(kvs))
	for _, kv := range kvs {
		k, ok := s.keys.parse(string(kv.Key))
		if !ok || k.kind != kindBlock {
			s.logf("cluster: ignoring key %q", kv.Key)
			continue
		}
		b, err := decodeBlock(k.network, k.prefix, kv.Value)
		if err != nil {
			s.logf("cluster: ignoring unreadable record: %v", err)
			continue
		}
		out = append(out, b)
	}
	return out
}

// ReleaseBlock frees b if b.Node still owns it: the delete is conditioned
// on the record being the one read, so a block that changed hands in
// between is left alone. Releasing a free block succeeds; releasing
// another node's block fails with a *NotOwnerError (ErrNotOwner).
func (s *Store) ReleaseBlock(ctx context.Context, b Block) error {
	what := fmt.Sprintf("release block %s of network %s for node %s", b.Prefix, b.Network, b.Node)
	if err := checkName(b.Network); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := normPrefix("block", b.Prefix); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	key := s.keys.block(b.Network, b.Prefix)
	resp, err := s.cli.Get(ctx, key)
	for err == nil {
		if len(resp.Kvs) == 0 {
			return nil
		}
		kv := resp.Kvs[0]
		cur, derr := decodeBlock(b.Network, b.Prefix, kv.Value)
		if derr != nil {
			return fmt.Errorf("%s: %w", what, derr)
		}
		if cur.Node != b.Node {
			return &NotOwnerError{Block: b, Owner: cur.Node}
		}
		var tx *clientv3.TxnResponse
		tx, err = s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision),
		).Then(clientv3.OpDelete(key)).Else(clientv3.OpGet(key)).Commit()
		if err == nil {
			if tx.Succeeded {
				return nil
			}
			resp = (*clientv3.GetResponse)(tx.Responses[0].GetResponseRange())
		}
	}
	return s.wrap(ctx, what, err)
}
