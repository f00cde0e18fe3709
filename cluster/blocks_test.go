package cluster_test

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/test/etcdtest"
)

type claimResult struct {
	node  string
	block cluster.Block
	err   error
}

// claimConcurrently runs n claims at once, spread over the stores (one
// etcd client each), claim i for node i%len(stores).
func claimConcurrently(t *testing.T, stores []*cluster.Store, n int, r cluster.BlockRequest) []claimResult {
	t.Helper()
	ctx := ctxT(t)
	out := make([]claimResult, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req := r
			req.Node = fmt.Sprintf("node-%d", i%len(stores))
			b, err := stores[i%len(stores)].ClaimBlock(ctx, req)
			out[i] = claimResult{node: req.Node, block: b, err: err}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// checkClaims asserts that the successful claims are distinct, aligned
// blocks of the subnet that etcd records for the claimer, and returns how
// many succeeded and how many found the subnet full.
func checkClaims(t *testing.T, s *cluster.Store, res []claimResult, subnet netip.Prefix, bits int) (ok, full int) {
	t.Helper()
	owner := map[netip.Prefix]string{}
	for _, r := range res {
		switch {
		case errors.Is(r.err, cluster.ErrNoFreeBlock):
			var nf *cluster.NoFreeBlockError
			if !errors.As(r.err, &nf) || nf.Subnet != subnet {
				t.Errorf("no-free-block error without its subnet: %v", r.err)
			}
			full++
			continue
		case r.err != nil:
			t.Errorf("claim for %s: %v", r.node, r.err)
			continue
		}
		p := r.block.Prefix
		if prev, dup := owner[p]; dup {
			t.Errorf("block %s claimed by %s and by %s", p, prev, r.node)
		}
		owner[p] = r.node
		if p.Bits() != bits || p != p.Masked() || !subnet.Contains(p.Addr()) {
			t.Errorf("claimed %s: not an aligned /%d of %s", p, bits, subnet)
		}
		ok++
	}
	blocks, err := s.Blocks(ctxT(t), "prod")
	if err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for _, b := range blocks {
		if !subnet.Contains(b.Prefix.Addr()) {
			continue
		}
		recorded++
		if owner[b.Prefix] != b.Node {
			t.Errorf("etcd says %s owns %s, the claim said %q", b.Node, b.Prefix, owner[b.Prefix])
		}
	}
	if recorded != ok {
		t.Errorf("%d blocks recorded in %s, %d claims succeeded", recorded, subnet, ok)
	}
	return ok, full
}

// TestClaimBlocksConcurrent: 200 claims at once from three nodes never
// hand out a block twice, and a full subnet says so.
func TestClaimBlocksConcurrent(t *testing.T) {
	srv := etcdtest.New(t)
	stores := []*cluster.Store{open(t, srv, "node-0"), open(t, srv, "node-1"), open(t, srv, "node-2")}

	// Room for all: 256 blocks.
	big := req("prod", "frontend", "10.0.0.0/16", 24, "")
	start := time.Now()
	res := claimConcurrently(t, stores, 200, big)
	ok, full := checkClaims(t, stores[0], res, big.Subnet, big.BlockBits)
	t.Logf("200 concurrent claims over 3 clients: %s", time.Since(start).Round(time.Millisecond))
	if ok != 200 || full != 0 {
		t.Fatalf("%d claims succeeded, %d found the subnet full; want 200, 0", ok, full)
	}
	// The claims are the lowest blocks: the first 200 of the subnet.
	for _, r := range res {
		if r.block.Prefix.Addr().As4()[2] >= 200 {
			t.Errorf("claimed %s although lower blocks were free", r.block.Prefix)
		}
	}
	// Fill the rest; then it is full.
	for i := 200; i < 256; i++ {
		big.Node = "node-0"
		if _, err := stores[i%3].ClaimBlock(ctxT(t), big); err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	if _, err := stores[1].ClaimBlock(ctxT(t), big); !errors.Is(err, cluster.ErrNoFreeBlock) {
		t.Fatalf("claim in a full subnet: %v, want ErrNoFreeBlock", err)
	}

	// More claims than blocks, at once: exactly the 64 blocks go out.
	small := req("prod", "backend", "10.1.0.0/22", 28, "")
	res = claimConcurrently(t, stores, 100, small)
	if ok, full := checkClaims(t, stores[2], res, small.Subnet, small.BlockBits); ok != 64 || full != 36 {
		t.Fatalf("%d claims succeeded, %d found the subnet full; want 64, 36", ok, full)
	}
}

// TestReleaseBlock: only the owner frees a block, and a freed block is the
// next one claimed.
func TestReleaseBlock(t *testing.T) {
	srv := etcdtest.New(t)
	a, b := open(t, srv, "a"), open(t, srv, "b")
	ctx := ctxT(t)
	r := req("prod", "frontend", "10.0.1.0/24", 26, "n1")
	var mine []cluster.Block
	for range 3 {
		blk, err := a.ClaimBlock(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, blk)
	}
	if mine[0].Prefix != netip.MustParsePrefix("10.0.1.0/26") || mine[2].Prefix != netip.MustParsePrefix("10.0.1.128/26") {
		t.Fatalf("claimed %v", mine)
	}
	stolen := mine[1]
	stolen.Node = "n2"
	var no *cluster.NotOwnerError
	if err := b.ReleaseBlock(ctx, stolen); !errors.As(err, &no) || !errors.Is(err, cluster.ErrNotOwner) || no.Owner != "n1" {
		t.Fatalf("release by a non-owner: %v, want a NotOwnerError naming n1", err)
	}
	if err := a.ReleaseBlock(ctx, mine[1]); err != nil {
		t.Fatalf("release by the owner: %v", err)
	}
	if err := a.ReleaseBlock(ctx, mine[1]); err != nil {
		t.Errorf("release of a free block: %v", err)
	}
	blocks, err := a.Blocks(ctx, "prod")
	if err != nil || len(blocks) != 2 || blocks[0] != mine[0] || blocks[1] != mine[2] {
		t.Fatalf("blocks after release: %v %v", blocks, err)
	}
	r.Node = "n2"
	got, err := b.ClaimBlock(ctx, r)
	if err != nil || got.Prefix != mine[1].Prefix || got.Node != "n2" {
		t.Fatalf("claim after release: %+v %v; want %s", got, err, mine[1].Prefix)
	}
}

// TestSubnetRecord: a subnet keeps the zone and block size of its first
// claim, and subnets of a network may not overlap.
func TestSubnetRecord(t *testing.T) {
	srv := etcdtest.New(t)
	s := open(t, srv, "a")
	ctx := ctxT(t)
	if _, err := s.ClaimBlock(ctx, req("prod", "frontend", "10.0.1.0/24", 26, "n1")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []cluster.BlockRequest{
		req("prod", "frontend", "10.0.1.0/24", 27, "n1"),  // other block size
		req("prod", "backend", "10.0.1.0/24", 26, "n1"),   // other zone
		req("prod", "backend", "10.0.0.0/16", 26, "n1"),   // contains it
		req("prod", "backend", "10.0.1.128/25", 26, "n1"), // inside it
	} {
		if _, err := s.ClaimBlock(ctx, bad); !errors.Is(err, cluster.ErrSubnetConflict) {
			t.Errorf("claim %+v: %v, want ErrSubnetConflict", bad, err)
		}
	}
	for _, good := range []cluster.BlockRequest{
		req("staging", "frontend", "10.0.1.0/24", 27, "n1"), // another network
		req("prod", "backend", "10.0.2.0/24", 26, "n1"),
		req("prod", "mgmt", "fd00:0:3::/64", 120, "n1"),
	} {
		if _, err := s.ClaimBlock(ctx, good); err != nil {
			t.Errorf("claim %+v: %v", good, err)
		}
	}
	blk, err := s.ClaimBlock(ctx, req("prod", "mgmt", "fd00:0:3::/64", 120, "n1"))
	if err != nil || blk.Prefix != netip.MustParsePrefix("fd00:0:3::100/120") {
		t.Errorf("second IPv6 block: %+v %v", blk, err)
	}
	for _, bad := range []cluster.BlockRequest{
		req("prod", "frontend", "10.0.1.1/24", 26, "n1"), // host bits
		req("prod", "frontend", "10.0.1.0/24", 23, "n1"), // block bigger than subnet
		req("prod", "frontend", "10.0.1.0/24", 33, "n1"),
		req("prod", "front end", "10.0.1.0/24", 26, "n1"),
		req("prod", "frontend", "10.0.1.0/24", 26, ""),
	} {
		if _, err := s.ClaimBlock(ctx, bad); err == nil || errors.Is(err, cluster.ErrSubnetConflict) {
			t.Errorf("claim %+v: %v, want a request error", bad, err)
		}
	}
}
