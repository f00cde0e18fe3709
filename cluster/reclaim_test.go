package cluster_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/test/etcdtest"
)

// claimN claims n blocks of the frontend subnet for the store's node.
func claimN(t *testing.T, s *cluster.Store, nodeName string, n int) []cluster.Block {
	t.Helper()
	var out []cluster.Block
	for range n {
		b, err := s.ClaimBlock(ctxT(t), req("prod", "frontend", "10.0.1.0/24", 27, nodeName))
		if err != nil {
			t.Fatalf("claim for %s: %v", nodeName, err)
		}
		out = append(out, b)
	}
	return out
}

// dies closes the node's store without deregistering and waits until its
// record has expired.
func dies(t *testing.T, s, observer *cluster.Store, name string) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, testTTL+3*time.Second, name+" expires", func() bool {
		_, ok := nodeNames(t, observer)[name]
		return !ok
	})
}

func owners(t *testing.T, s *cluster.Store) map[netip.Prefix]string {
	t.Helper()
	blocks, err := s.Blocks(ctxT(t), "prod")
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]string{}
	for _, b := range blocks {
		out[b.Prefix] = b.Node
	}
	return out
}

func reclaim(t *testing.T, s *cluster.Store, grace time.Duration, now time.Time) []cluster.Block {
	t.Helper()
	freed, err := s.ReclaimDead(ctxT(t), grace, now)
	if err != nil {
		t.Fatalf("reclaim at %s: %v", now.Format(time.TimeOnly), err)
	}
	return freed
}

// TestReclaimDead: a dead node's blocks are freed once it has been gone
// for longer than the grace, and another node can claim them; a live
// node's blocks are never touched.
func TestReclaimDead(t *testing.T) {
	srv := etcdtest.New(t)
	const grace = time.Minute
	a, b := open(t, srv, "a"), open(t, srv, "b")
	register(t, a, node("na", "192.0.2.1", "02:00:00:00:00:01"))
	register(t, b, node("nb", "192.0.2.2", "02:00:00:00:00:02"))
	aBlocks := claimN(t, a, "na", 2)
	bBlocks := claimN(t, b, "nb", 1)
	dies(t, a, b, "na")

	t0 := time.Now()
	if freed := reclaim(t, b, grace, t0); len(freed) != 0 {
		t.Fatalf("first sight of the dead node freed %v", freed)
	}
	if freed := reclaim(t, b, grace, t0.Add(grace/2)); len(freed) != 0 {
		t.Fatalf("within the grace, freed %v", freed)
	}
	// Measured from the first sight, not from the last call.
	if freed := reclaim(t, b, grace, t0.Add(grace)); len(freed) != 0 {
		t.Fatalf("at exactly the grace, freed %v", freed)
	}
	freed := reclaim(t, b, grace, t0.Add(grace+time.Second))
	if !slices.Equal(freed, aBlocks) {
		t.Fatalf("after the grace, freed %v; want %v", freed, aBlocks)
	}
	if got := owners(t, b); len(got) != 1 || got[bBlocks[0].Prefix] != "nb" {
		t.Fatalf("blocks left: %v; want only nb's %s", got, bBlocks[0].Prefix)
	}
	if freed := reclaim(t, b, grace, t0.Add(2*grace)); len(freed) != 0 {
		t.Fatalf("second reclaim freed %v", freed)
	}
	// The freed blocks are claimable by another node, lowest first.
	c := open(t, srv, "c")
	register(t, c, node("nc", "192.0.2.3", "02:00:00:00:00:03"))
	if got := claimN(t, c, "nc", 1); got[0].Prefix != aBlocks[0].Prefix {
		t.Fatalf("claim after reclaim got %s, want %s", got[0].Prefix, aBlocks[0].Prefix)
	}
	raw := srv.Client()
	if resp, err := raw.Get(ctxT(t), b.Prefix()+"gone/", clientPrefix()); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("markers left behind: %v %v", resp, err)
	}
}

// TestReclaimComeBack: a node back before the grace keeps its blocks, and
// a node that dies again gets the whole grace again.
func TestReclaimComeBack(t *testing.T) {
	srv := etcdtest.New(t)
	const grace = time.Minute
	a, b := open(t, srv, "a"), open(t, srv, "b")
	register(t, a, node("na", "192.0.2.1", "02:00:00:00:00:01"))
	register(t, b, node("nb", "192.0.2.2", "02:00:00:00:00:02"))
	aBlocks := claimN(t, a, "na", 2)
	dies(t, a, b, "na")

	t0 := time.Now()
	reclaim(t, b, grace, t0) // marks na gone since t0
	a2 := open(t, srv, "a2")
	register(t, a2, node("na", "192.0.2.11", "02:00:00:00:00:11"))
	if freed := reclaim(t, b, grace, t0.Add(2*grace)); len(freed) != 0 {
		t.Fatalf("a node that came back lost %v", freed)
	}
	for _, blk := range aBlocks {
		if owners(t, b)[blk.Prefix] != "na" {
			t.Fatalf("block %s no longer na's", blk.Prefix)
		}
	}

	// Gone again: the grace starts from the new first sight.
	dies(t, a2, b, "na")
	t1 := t0.Add(3 * grace)
	reclaim(t, b, grace, t1)
	if freed := reclaim(t, b, grace, t1.Add(grace/2)); len(freed) != 0 {
		t.Fatalf("old marker reused: freed %v", freed)
	}
	if freed := reclaim(t, b, grace, t1.Add(grace+time.Second)); len(freed) != 2 {
		t.Fatalf("after the new grace, freed %v; want na's 2 blocks", freed)
	}
}
