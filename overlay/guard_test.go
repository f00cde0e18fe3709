//go:build linux

package overlay_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/overlay"
	"github.com/zonenet/zonenet/test/cnitest"
)

// An unknown host on the underlay that speaks VXLAN can reach a node's
// containers unless the guard drops its datagrams; peers in the set still
// get through.
func TestVXLANGuard(t *testing.T) {
	c := newCluster(t, 1, 1, 0)
	a, b, x := c.nodes[0], c.nodes[1], c.nodes[2]
	a.mustReconcile(c.peers(a, b))
	b.mustReconcile(c.peers(a, b))
	// x is not in a's list, but x programs a as its peer: it encapsulates
	// its own host's packets to a's containers (source: x's underlay
	// address; the replies come back over the underlay).
	x.mustReconcile(c.peers(a, x))
	// Off, so the outcome does not depend on the kernel's default for
	// reverse-path filtering of the decapsulated source.
	for _, k := range []string{"net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter", "net/ipv4/conf/" + a.cfg.Device + "/rp_filter"} {
		a.sysctl(k, "0")
	}
	srv := c.serve()
	target := srv[a.ctrs[0]][0]
	if _, err := cnitest.TalkTCP(x.ns, target, 3*time.Second); err != nil {
		t.Fatalf("without the guard, the unknown host did not get through (the test proves nothing): %v", err)
	}

	r := acl.Exec{LockPath: filepath.Join(t.TempDir(), "iptables.lock")}
	g := acl.VXLANGuard{Port: overlay.DefaultPort, PeerSet: overlay.DefaultPeerSet}
	for i := 0; i < 2; i++ {
		if err := a.ns.Do(func() error { return acl.EnsureVXLANGuard(r, g) }); err != nil {
			t.Fatal(err)
		}
	}
	saved := string(a.ns.Run(t, "iptables-save", "-t", "filter"))
	if n := strings.Count(saved, "zonenet vxlan"); n != 1 {
		t.Fatalf("%d guard rules after two Ensures:\n%s", n, saved)
	}
	if ok, err := acl.HasVXLANGuard(nsRunner{a.ns, r}, g); err != nil || !ok {
		t.Fatalf("HasVXLANGuard = %v, %v; iptables:\n%s", ok, err, saved)
	}

	cnitest.ExpectNoTCP(t, x.ns, target)
	c.reach(srv, b.ctrs[0], a)
	c.reach(srv, a.ctrs[0], b)

	// Once x is a peer, the set lets it in.
	ch := a.mustReconcile(c.peers(a, b, x))
	if ch.Count(overlay.Add, overlay.KindPeerSet) != 1 {
		t.Fatalf("Reconcile with x: %s", ch)
	}
	if _, err := cnitest.TalkTCP(x.ns, target, 3*time.Second); err != nil {
		t.Fatalf("a peer in the set is dropped: %v", err)
	}
}

// nsRunner runs an acl.Runner's reads inside a namespace.
type nsRunner struct {
	ns *cnitest.NS
	acl.Runner
}

func (n nsRunner) Save(f acl.Family, table string) ([]byte, error) {
	var out []byte
	err := n.ns.Do(func() error {
		var err error
		out, err = n.Runner.Save(f, table)
		return err
	})
	return out, err
}
