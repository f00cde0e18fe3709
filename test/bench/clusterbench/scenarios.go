//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/overlay"
)

// threeResult is the first part's figures, one per round.
type threeResult struct {
	join     []time.Duration // start → programmed on both peers (the later)
	joinSelf []time.Duration // start → the new node programmed both peers
	drop     []time.Duration // death → dropped by both peers (the later)
	rssKiB   int             // a peer's zonenetd at 3 nodes
	hwmKiB   int
}

// threeNodes runs node1 and node2, then boots node3 rounds times: each
// time it joins, and dies. Every node owns one block before it starts, as
// a node that reboots within the reclaim grace does, so that peers have a
// neighbour and a route of it to program, not only its FDB entry.
func (r *run) threeNodes(rounds int) (threeResult, error) {
	var res threeResult
	const prefix = "/three/"
	fc, err := r.b.startFakes(prefix, r.ttl)
	if err != nil {
		return res, err
	}
	defer fc.close()
	var nodes []*node
	var peers []peer
	for i := 1; i <= 3; i++ {
		n, err := r.b.newNode(fmt.Sprintf("node%d", i), prefix, nthAddr(ulNet, i), r.ttl)
		if err != nil {
			return res, err
		}
		blk, err := fc.call("claim %s", n.name)
		if err != nil {
			return res, err
		}
		p, err := netip.ParsePrefix(blk)
		if err != nil {
			return res, fmt.Errorf("claim for %s: %q", n.name, blk)
		}
		nodes, peers = append(nodes, n), append(peers, n.peer(p))
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	for _, n := range []*node{n1, n2} {
		if err := n.boot(); err != nil {
			return res, err
		}
		if _, err := n.start(r.zonenetd); err != nil {
			return res, err
		}
	}
	if _, err := converge(time.Now(), 30*time.Second, watch{n1, has(peers[1])}, watch{n2, has(peers[0])}); err != nil {
		return res, fmt.Errorf("node1 and node2: %w", err)
	}
	r.log("node1 and node2 programmed each other")
	for round := 1; round <= rounds; round++ {
		if err := n3.boot(); err != nil {
			return res, err
		}
		t0, err := n3.start(r.zonenetd)
		if err != nil {
			return res, err
		}
		got, err := converge(t0, 30*time.Second,
			watch{n1, has(peers[2])}, watch{n2, has(peers[2])}, watch{n3, has(peers[0], peers[1])})
		if err != nil {
			return res, fmt.Errorf("round %d, node3 joins: %w", round, err)
		}
		res.join = append(res.join, max(got[0], got[1]))
		res.joinSelf = append(res.joinSelf, got[2])
		r.log("round %d: node3 programmed on node1 after %s, node2 after %s; node3 programmed both after %s",
			round, ms(got[0]), ms(got[1]), ms(got[2]))
		// Let its registration settle into keep-alives before it dies:
		// a lease is renewed every third of the TTL.
		time.Sleep(time.Second)
		t1 := time.Now()
		if err := n3.die(); err != nil {
			return res, err
		}
		got, err = converge(t1, r.ttl+10*time.Second, watch{n1, lacks(peers[2])}, watch{n2, lacks(peers[2])})
		if err != nil {
			return res, fmt.Errorf("round %d, node3 dies: %w", round, err)
		}
		res.drop = append(res.drop, max(got[0], got[1]))
		r.log("round %d: node3 dropped by node1 after %s, node2 after %s (TTL %s)", round, ms(got[0]), ms(got[1]), r.ttl)
	}
	if res.rssKiB, res.hwmKiB, err = n1.memory(); err != nil {
		return res, err
	}
	// The second part measures one real node alone: these two stop.
	for _, n := range []*node{n1, n2} {
		if err := n.die(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// manyResult is the second part's figures.
type manyResult struct {
	burst, afterLast  time.Duration // first write → all programmed; last write → all programmed
	writes            time.Duration // writing the registrations and claims
	cold              time.Duration // zonenetd start → all programmed, fresh namespace
	revoked, expired  time.Duration // → dropped
	rss1, hwm1        int           // zonenetd alone in the cluster
	rssMany, hwmMany  int           // after programming the fakes
	rssCold, hwmCold  int           // the cold-started one
	fdb, neigh, route int           // kernel counts at the end of the burst
	members           int
}

// manyPeers runs one real node, writes peers-1 fake nodes at once while
// it runs, then restarts its machine, then revokes one fake's lease and
// lets another's expire.
func (r *run) manyPeers(peers int) (manyResult, error) {
	var res manyResult
	const prefix = "/many/"
	fc, err := r.b.startFakes(prefix, r.ttl)
	if err != nil {
		return res, err
	}
	defer fc.close()
	n, err := r.b.newNode("real1", prefix, nthAddr(ulNet, 10), r.ttl)
	if err != nil {
		return res, err
	}
	if err := n.boot(); err != nil {
		return res, err
	}
	if _, err := n.start(r.zonenetd); err != nil {
		return res, err
	}
	if err := n.waitHealthy(30 * time.Second); err != nil {
		return res, err
	}
	if res.rss1, res.hwm1, err = n.memory(); err != nil {
		return res, err
	}
	fakes := peers - 1
	if _, err := fc.call("open %d", fakes); err != nil {
		return res, err
	}
	alive := map[int]bool{}
	for i := 1; i <= fakes; i++ {
		alive[i] = true
	}
	t0 := time.Now()
	if _, err := fc.call("register"); err != nil {
		return res, err
	}
	res.writes = time.Since(t0)
	got, err := converge(t0, 60*time.Second, watch{n, hasFakes(alive)})
	if err != nil {
		return res, fmt.Errorf("burst of %d registrations: %w", fakes, err)
	}
	res.burst, res.afterLast = got[0], got[0]-res.writes
	r.log("%d fake nodes written in %s, all programmed %s after the first write", fakes, ms(res.writes), ms(res.burst))
	st, err := n.snapshot()
	if err != nil {
		return res, err
	}
	res.fdb, res.neigh, res.route, res.members = len(st.FDB), len(st.Neighs), len(st.Routes), len(st.PeerSet)
	time.Sleep(time.Second)
	if res.rssMany, res.hwmMany, err = n.memory(); err != nil {
		return res, err
	}

	// The machine restarts: an empty kernel, the same name and store.
	if err := n.die(); err != nil {
		return res, err
	}
	if err := n.boot(); err != nil {
		return res, err
	}
	t0, err = n.start(r.zonenetd)
	if err != nil {
		return res, err
	}
	if got, err = converge(t0, 60*time.Second, watch{n, hasFakes(alive)}); err != nil {
		return res, fmt.Errorf("cold start: %w", err)
	}
	res.cold = got[0]
	r.log("cold start: %d peers programmed %s after zonenetd started", fakes, ms(res.cold))
	time.Sleep(time.Second)
	if res.rssCold, res.hwmCold, err = n.memory(); err != nil {
		return res, err
	}

	for _, step := range []struct {
		cmd string
		i   int
		out *time.Duration
	}{{"revoke", fakes / 2, &res.revoked}, {"stop", fakes/2 + 1, &res.expired}} {
		delete(alive, step.i)
		t := time.Now()
		if _, err := fc.call("%s %s", step.cmd, fakeName(step.i)); err != nil {
			return res, err
		}
		gone := fakePeer(step.i)
		got, err := converge(t, r.ttl+10*time.Second, watch{n, func(st overlay.State) string {
			if k := mentions(st, gone); k > 0 {
				return fmt.Sprintf("%d entries of %s", k, gone.name)
			}
			return hasFakes(alive)(st)
		}})
		if err != nil {
			return res, fmt.Errorf("%s %s: %w", step.cmd, gone.name, err)
		}
		*step.out = got[0]
		r.log("%s %s: dropped after %s", step.cmd, gone.name, ms(got[0]))
	}
	return res, n.die()
}

// has holds when every peer in ps is programmed.
func has(ps ...peer) func(overlay.State) string {
	return func(st overlay.State) string {
		for _, p := range ps {
			if miss := programmed(st, p); miss != "" {
				return p.name + " lacks " + miss
			}
		}
		return ""
	}
}

// lacks holds when nothing refers to p any more.
func lacks(p peer) func(overlay.State) string {
	return func(st overlay.State) string {
		if k := mentions(st, p); k > 0 {
			return fmt.Sprintf("%d entries of %s left", k, p.name)
		}
		return ""
	}
}

// fakePeer is fake node i as a peer; its block is whichever the burst of
// claims gave it, so hasFakes looks for one route of the zone instead.
func fakePeer(i int) peer {
	return peer{name: fakeName(i), underlay: fakeUnderlay(i), mac: overlay.DeriveMAC(fakeName(i))}
}

// hasFakes holds when the kernel holds exactly the fakes in alive: each
// one's FDB entry, neighbour, one /26 route of the zone and set member,
// and no other entry.
func hasFakes(alive map[int]bool) func(overlay.State) string {
	return func(st overlay.State) string {
		routes := map[netip.Addr]int{}
		for _, rt := range st.Routes {
			if zoneSubnet.Contains(rt.Dst.Addr()) && rt.Dst.Bits() == blockBits {
				routes[rt.Gw]++
			}
		}
		for i := range alive {
			p := fakePeer(i)
			if !hasFDB(st, p) || !hasNeigh(st, p) || routes[p.underlay] != 1 || !inSet(st, p.underlay) {
				return fmt.Sprintf("%s not (fully) programmed; kernel has %d fdb, %d neigh, %d routes, %d set members",
					p.name, len(st.FDB), len(st.Neighs), len(st.Routes), len(st.PeerSet))
			}
		}
		if len(st.FDB) != len(alive) || len(st.Neighs) != len(alive) || len(st.Routes) != len(alive) || len(st.PeerSet) != len(alive) {
			return fmt.Sprintf("kernel has %d fdb, %d neigh, %d routes, %d set members for %d peers",
				len(st.FDB), len(st.Neighs), len(st.Routes), len(st.PeerSet), len(alive))
		}
		return ""
	}
}

// waitHealthy waits for zonenetd's /healthz, asked on the node's own
// loopback, to answer 200: registered and synced with the cluster.
func (n *node) waitHealthy(timeout time.Duration) error {
	path := netns.Path(n.ns)
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(path, network, addr, time.Second)
		},
		DisableKeepAlives: true,
	}}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := cl.Get("http://127.0.0.1:9476/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		if !n.d.running() {
			return fmt.Errorf("zonenetd on %s exited; see %s", n.name, n.d.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zonenetd on %s not healthy after %s: %v", n.name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }

// close ends the writer: it closes its stores without leaving, so fake
// records expire with their leases.
func (c *fakeClient) close() {
	c.in.Close()
	select {
	case <-c.p.exited:
	case <-time.After(10 * time.Second):
		c.p.kill()
	}
}
