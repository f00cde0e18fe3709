//go:build linux

package multinode

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/zonenet/zonenet/test/cnitest"
)

// A zone sized to run out: a /26 is four /28 blocks, 61 addresses once
// the subnet's network, gateway and broadcast addresses are left out, for
// 81 ADDs.
const (
	fullZone    = "mgmt"
	fullPerNode = 27
)

var fullSubnet = netip.MustParsePrefix("10.98.2.0/26")

// TestBlockRaceZoneFull: 81 ADDs at once over three nodes into a zone
// with room for 61. The three daemons share its four blocks out; each ADD
// that finds its node's blocks full and no block free fails with code 11
// and says the zone has no free block left, and leaves nothing behind (no
// lease, no veth, no interface in the container). What did succeed passes
// the same audit as TestBlockRace, and DEL of everything, failed ADDs
// included, leaves no lease.
func TestBlockRaceZoneFull(t *testing.T) {
	began := time.Now()
	c := newSizedCluster(t, map[string]netip.Prefix{fullZone: fullSubnet}, raceBits)
	ctrs := c.raceCtrs(3*fullPerNode, fullZone)
	took := c.runAll(ctrs, "ADD")
	t.Logf("%d ADDs: %s wall, %s", len(ctrs), took.Round(time.Millisecond), latencies(ctrs))

	const why = "has no free /28 block left in the cluster"
	failed := map[string]int{}
	for _, x := range ctrs {
		switch {
		case x.err == nil:
		case x.err.Code == types.ErrTryAgainLater && strings.Contains(x.err.Msg, why):
			failed[x.node.name]++
			if x.ns.HasLink(t, "eth0") {
				t.Errorf("failed ADD %s on %s left eth0 in the container", x.id, x.node.name)
			}
		default:
			t.Errorf("ADD %s on %s: code %d: %s, want success or code %d with %q\n%s",
				x.id, x.node.name, x.err.Code, x.err.Msg, types.ErrTryAgainLater, why, x.stderr)
		}
	}

	a := c.audit(fullZone, raceBits, ctrs)
	for _, p := range capLines(a.problems(), 30) {
		t.Error(p)
	}
	if len(a.etcd) != 4 {
		t.Errorf("etcd lists %d blocks of the zone, want all 4: %v", len(a.etcd), a.etcd)
	}
	total := 0
	for _, n := range c.nodes {
		got, blocks := len(a.results[n.name]), a.blocksOf()[n.name]
		total += got
		t.Logf("%s: %d addresses in %d blocks, %d ADDs refused", n.name, got, blocks, failed[n.name])
		// A node refuses only once its own blocks are full: at most the
		// subnet's network, gateway and broadcast addresses are not
		// handed out.
		if failed[n.name] > 0 && got < 16*blocks-3 {
			t.Errorf("%s refused %d ADDs with %d addresses in %d blocks", n.name, failed[n.name], got, blocks)
		}
		if v := len(n.ns.HostVeths(t)); v != got {
			t.Errorf("%s: %d host veths for %d containers", n.name, v, got)
		}
	}
	if total > 61 || total+failed["node1"]+failed["node2"]+failed["node3"] != len(ctrs) {
		t.Errorf("%d ADDs succeeded and %v were refused, of %d into 61 addresses", total, failed, len(ctrs))
	}

	took = c.runAll(ctrs, "DEL")
	for _, x := range ctrs {
		if x.err != nil {
			t.Errorf("DEL %s on %s: code %d: %s", x.id, x.node.name, x.err.Code, x.err.Msg)
		}
	}
	for _, n := range c.nodes {
		if left := cnitest.Leases(t, n.dataDir(t), c.network); len(left) > 0 {
			t.Errorf("%s: %d leases left after DEL", n.name, len(left))
		}
	}
	t.Logf("DELs %s wall; whole test %s", took.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}
