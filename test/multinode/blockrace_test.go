//go:build linux

package multinode

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/test/cnitest"
)

// The race: every node starts with no block and fills each block it
// claims at the same rate as the others, so the three daemons keep
// claiming at the same moments, each against the other two. Blocks of 16
// addresses make 200 ADDs cost about 15 claims; a /23 holds 32 blocks, so
// the zone has room for all of them whatever the order.
const (
	raceADDs    = 200
	raceBits    = 28
	raceWorkers = 10 // plugin execs at once per node
	raceZone    = "backend"
)

// raceSubnet lies outside cnitest.Subnet4's range, so it overlaps neither
// the underlay nor the other zones. It exists only in the nodes'
// namespaces.
var raceSubnet = netip.MustParsePrefix("10.98.0.0/23")

// TestBlockRace: 200 ADDs through the real plugin, spread over the three
// nodes and run at once, into one zone with small blocks. Every ADD
// succeeds; across the cluster no address is handed out twice, each lies
// in a block etcd gives to the node that handed it out, and no block is
// in two nodes' stores; every node routes every other node's blocks.
// DEL of everything leaves no lease and no veth.
//
// ZONENET_FORGE_BLOCK=1 records, before the ADDs, a block in node2's store
// that etcd does not give it, as a claim that skipped etcd's transaction
// would: the test must then fail.
func TestBlockRace(t *testing.T) {
	began := time.Now()
	c := newSizedCluster(t, map[string]netip.Prefix{raceZone: raceSubnet}, raceBits)
	t.Logf("cluster up in %s", time.Since(began).Round(time.Millisecond))
	if os.Getenv("ZONENET_FORGE_BLOCK") == "1" {
		forged := netip.PrefixFrom(raceSubnet.Addr(), raceBits)
		withNodeStore(t, c.nodes[1], func(s *ipam.Store) error { return s.AddBlock(c.network, raceZone, forged) })
		t.Logf("forged block %s in %s's store", forged, c.nodes[1].name)
	}

	ctrs := c.raceCtrs(raceADDs, raceZone)
	took := c.runAll(ctrs, "ADD")
	for _, x := range ctrs {
		if x.err != nil {
			t.Errorf("ADD %s on %s: code %d: %s\n%s", x.id, x.node.name, x.err.Code, x.err.Msg, x.stderr)
		}
	}
	t.Logf("%d ADDs on 3 nodes, %d at once per node: %s wall, %s", len(ctrs), raceWorkers, took.Round(time.Millisecond), latencies(ctrs))
	if t.Failed() {
		t.FailNow()
	}

	a := c.audit(raceZone, raceBits, ctrs)
	for _, p := range capLines(a.problems(), 30) {
		t.Error(p)
	}
	claims := 0
	for _, n := range c.nodes {
		k := strings.Count(readFile(t, n.proc.log), `msg="claimed block"`)
		claims += k
		t.Logf("%s: %d addresses in %d blocks (%d claims logged)", n.name, len(a.results[n.name]), a.blocksOf()[n.name], k)
	}
	if claims != len(a.etcd) {
		t.Errorf("the daemons logged %d claims, etcd lists %d blocks of the zone", claims, len(a.etcd))
	}
	if u := a.unused(); len(u) > 0 {
		t.Logf("blocks claimed but unused: %v", u)
	}
	c.waitRoutes(a, 10*time.Second)

	took = c.runAll(ctrs, "DEL")
	for _, x := range ctrs {
		if x.err != nil {
			t.Errorf("DEL %s on %s: code %d: %s\n%s", x.id, x.node.name, x.err.Code, x.err.Msg, x.stderr)
		}
	}
	t.Logf("%d DELs: %s wall, %s", len(ctrs), took.Round(time.Millisecond), latencies(ctrs))
	for _, n := range c.nodes {
		if left := cnitest.Leases(t, n.dataDir(t), c.network); len(left) > 0 {
			t.Errorf("%s: %d leases left after DEL:\n%s", n.name, len(left), strings.Join(capLines(cnitest.LeaseLines(left), 10), "\n"))
		}
		if v := n.ns.HostVeths(t); len(v) > 0 {
			t.Errorf("%s: %d host veths left after DEL", n.name, len(v))
		}
	}
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// newSizedCluster is newCluster with three nodes whose zones have other
// subnets (those in subnets replace the harness's /24s) and whose network
// has another block size, set before any zonenetd starts.
func newSizedCluster(t *testing.T, subnets map[string]netip.Prefix, bits int) *testCluster {
	t.Helper()
	c := newCluster(t, opts{nodes: 0, policy: testPolicy})
	for z, p := range subnets {
		c.subnets[z] = p
	}
	for i := range 3 {
		n := c.newNode(fmt.Sprintf("node%d", i+1), cnitest.Nth(c.ulNet, i+1))
		n.setBlockBits(bits)
		n.boot()
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.waitHealthy(20 * time.Second)
	}
	c.waitConverged(20 * time.Second)
	return c
}

// setBlockBits rewrites the node's plugin configuration and conflist (the
// daemon's copy) with another block size and no policy; the two must
// agree or the daemon refuses the plugin's claims.
func (n *tnode) setBlockBits(bits int) {
	t := n.c.t
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(n.plugin, &p); err != nil {
		t.Fatal(err)
	}
	p["blockSize"] = bits
	// The race is the allocator's: without a policy an ADD takes no
	// iptables lock, which the three simulated nodes would share with
	// every zonenet process on this machine. ZONENET_RACE_POLICY=1 keeps
	// it, to watch ADDs and zonenetd contend for that lock.
	if os.Getenv("ZONENET_RACE_POLICY") != "1" {
		delete(p, "policy")
	}
	var err error
	if n.plugin, err = json.Marshal(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.conflist, n.c.conflist(p), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dataDir is the node's store directory, from its plugin configuration.
func (n *tnode) dataDir(t *testing.T) string {
	t.Helper()
	var p struct {
		DataDir string `json:"dataDir"`
	}
	if err := json.Unmarshal(n.plugin, &p); err != nil || p.DataDir == "" {
		t.Fatalf("%s: no dataDir in %s (%v)", n.name, n.plugin, err)
	}
	return p.DataDir
}

func withNodeStore(t *testing.T, n *tnode, fn func(*ipam.Store) error) {
	t.Helper()
	s, err := ipam.Open(ipam.PathIn(n.dataDir(t)), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := fn(s); err != nil {
		t.Fatalf("%s store: %v", n.name, err)
	}
}

// raceCtr is one container of the race, and the outcome of its last verb.
type raceCtr struct {
	node   *tnode
	zone   string
	ns     *cnitest.NS
	id     string
	ip     netip.Addr
	err    *types.Error
	stderr string
	took   time.Duration
}

// raceCtrs makes n container namespaces for zone, dealt round-robin to
// the nodes.
func (c *testCluster) raceCtrs(n int, zone string) []*raceCtr {
	c.t.Helper()
	out := make([]*raceCtr, n)
	for i := range out {
		out[i] = &raceCtr{node: c.nodes[i%len(c.nodes)], zone: zone, ns: cnitest.NewNS(c.t, "znt-mnrace"),
			id: fmt.Sprintf("race-%s-%s-%03d", c.network, zone, i)}
	}
	return out
}

// runAll runs verb for every container through the real plugin inside its
// node, raceWorkers at a time per node, all nodes released together, and
// returns the wall time. Outcomes land in the containers.
func (c *testCluster) runAll(ctrs []*raceCtr, verb string) time.Duration {
	queues := map[*tnode]chan *raceCtr{}
	for _, n := range c.nodes {
		queues[n] = make(chan *raceCtr, len(ctrs))
	}
	for _, x := range ctrs {
		queues[x.node] <- x
	}
	release := make(chan struct{})
	var wg sync.WaitGroup
	for n, q := range queues {
		close(q)
		for range raceWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-release
				for x := range q {
					x.run(n, verb)
				}
			}()
		}
	}
	start := time.Now()
	close(release)
	wg.Wait()
	return time.Since(start)
}

func (x *raceCtr) run(n *tnode, verb string) {
	o := cnitest.Run(cnitest.Call{
		Bin: n.c.bins.Zonenet, Command: verb, ContainerID: x.id, Netns: x.ns.Path, IfName: "eth0",
		Args: "ZONE=" + x.zone, Config: n.plugin, InNetns: n.ns.Path,
	})
	x.err, x.stderr, x.took = o.Err, strings.TrimSpace(string(o.Stderr)), o.Elapsed
	if o.Err != nil || verb != "ADD" {
		return
	}
	r, err := cnitest.ParseResultErr(cniVer, o.Stdout)
	if err != nil {
		x.err = &types.Error{Code: types.ErrInternal, Msg: err.Error()}
		return
	}
	for _, ip := range r.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok && a.Unmap().Is4() {
			x.ip = a.Unmap()
		}
	}
	if !x.ip.IsValid() {
		x.err = &types.Error{Code: types.ErrInternal, Msg: "ADD returned no IPv4 address: " + string(o.Stdout)}
	}
}

// audit gathers, after the ADDs, what every side says about the zone.
func (c *testCluster) audit(zone string, bits int, ctrs []*raceCtr) blockAudit {
	c.t.Helper()
	etcd, err := parseStatusBlocks(c.status(), c.network, zone)
	if err != nil {
		c.t.Fatal(err)
	}
	a := blockAudit{subnet: c.subnets[zone], bits: bits, etcd: etcd,
		local: map[string][]netip.Prefix{}, leases: map[string][]netip.Addr{}, results: map[string][]netip.Addr{}}
	for _, x := range ctrs {
		if x.err == nil && x.zone == zone {
			a.results[x.node.name] = append(a.results[x.node.name], x.ip)
		}
	}
	for _, n := range c.nodes {
		withNodeStore(c.t, n, func(s *ipam.Store) error {
			a.local[n.name], err = s.Blocks(c.network, zone)
			return err
		})
		for _, l := range cnitest.Leases(c.t, n.dataDir(c.t), c.network) {
			if l.Zone == zone {
				a.leases[n.name] = append(a.leases[n.name], cnitest.LeasedIPs([]ipam.Attachment{l})...)
			}
		}
	}
	return a
}

// waitRoutes waits until every node routes each block of every other node
// to that node: the blocks claimed in the race reached all peers.
func (c *testCluster) waitRoutes(a blockAudit, timeout time.Duration) {
	c.t.Helper()
	under := map[string]netip.Addr{}
	for _, n := range c.nodes {
		under[n.name] = n.underlay
	}
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, n := range c.nodes {
			st := n.snapshot()
			for _, b := range a.etcd {
				if b.Node != n.name && !st.routes(b.Prefix, under[b.Node]) {
					missing = append(missing, fmt.Sprintf("%s lacks %s via %s (%s)", n.name, b.Prefix, under[b.Node], b.Node))
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Errorf("after %s:\n%s", timeout, strings.Join(capLines(missing, 20), "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// latencies summarises the per-exec times of the last verb.
func latencies(ctrs []*raceCtr) string {
	var d []time.Duration
	for _, x := range ctrs {
		d = append(d, x.took)
	}
	slices.Sort(d)
	if len(d) == 0 {
		return "no execs"
	}
	return fmt.Sprintf("per exec median %s, max %s", d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

// capLines keeps the first n lines and says how many were left out.
func capLines(l []string, n int) []string {
	if len(l) <= n {
		return l
	}
	return append(l[:n:n], fmt.Sprintf("... and %d more", len(l)-n))
}
