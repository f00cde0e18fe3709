//go:build linux

package multinode

import (
	"strings"
	"testing"
	"time"
)

// TestEtcdOutage stops etcd for twice the TTL: every node keeps its
// overlay exactly as it was and traffic across nodes goes on, /healthz
// says etcd is unreachable, each daemon logs the outage once and its end
// once, and when etcd is back every node is healthy again without a
// change to the kernel.
func TestEtcdOutage(t *testing.T) {
	c := newCluster(t, opts{nodes: 3, policy: testPolicy})
	var ctrs []*tctr
	for _, n := range c.nodes {
		ctrs = append(ctrs, n.addCtr("mgmt"))
	}
	c.waitConverged(10 * time.Second)
	for _, x := range ctrs {
		x.serve(t, probePort)
	}
	probes := []*probe{startProbe(t, ctrs[0], ctrs[1]), startProbe(t, ctrs[1], ctrs[2]), startProbe(t, ctrs[2], ctrs[0])}
	before := map[*tnode]string{}
	for _, n := range c.nodes {
		before[n] = n.snapshot().key()
	}

	down := time.Now()
	c.etcd.stop()
	for _, n := range c.nodes {
		n.waitHealth(503, "etcd: unreachable", 10*time.Second)
	}
	t.Logf("every node reports etcd unreachable %s after it stopped", time.Since(down).Round(time.Millisecond))
	// ADD inside a block the node holds needs no etcd; the first ADD of
	// a zone the node has no block of needs a claim: code 11.
	n0 := c.nodes[0]
	n0.addCtr("mgmt")
	if _, cerr := n0.tryAdd("frontend"); cerr == nil || cerr.Code != 11 {
		t.Errorf("ADD needing a new block while etcd is down: %v, want CNI code 11", cerr)
	} else if !strings.Contains(cerr.Msg+cerr.Details, "unreachable") {
		t.Errorf("code 11 without saying the cluster store is unreachable: %s (%s)", cerr.Msg, cerr.Details)
	}
	time.Sleep(2*nodeTTL - time.Since(down))
	for _, n := range c.nodes {
		if got := n.snapshot().key(); got != before[n] {
			t.Errorf("%s: overlay changed while etcd was down:\nbefore:\n%s\nafter:\n%s", n.name, before[n], got)
		}
	}

	up := time.Now()
	c.etcd.start()
	for _, n := range c.nodes {
		n.waitHealthy(20 * time.Second)
	}
	t.Logf("every node healthy %s after etcd came back (down for %s)", time.Since(up).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond))
	time.Sleep(time.Second) // re-registrations reach the peers
	for _, n := range c.nodes {
		if got := n.snapshot().key(); got != before[n] {
			t.Errorf("%s: overlay changed across the outage:\nbefore:\n%s\nafter:\n%s", n.name, before[n], got)
		}
		log := readFile(t, n.proc.log)
		if k := strings.Count(log, "etcd unreachable"); k != 1 {
			t.Errorf("%s logged the outage %d times, want once", n.name, k)
		}
		if k := strings.Count(log, "etcd reachable again"); k != 1 {
			t.Errorf("%s logged the end of the outage %d times, want once", n.name, k)
		}
	}
	for _, p := range probes {
		p.finish(t)
	}
	// Converged: the block the outage refused is claimed now.
	n0.addCtr("frontend")
}
