//go:build linux

package integration

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/zonenet/zonenet/daemon"
	"github.com/zonenet/zonenet/daemon/api"
	"github.com/zonenet/zonenet/daemon/daemontest"
	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/test/cnitest"
)

// clusterEnv is an env in cluster mode (store etcd) with zonenetd's local
// endpoint served from the test process on the test's data directory; a
// fake cluster store hands out the zone's /28 blocks in address order.
type clusterEnv struct {
	*env
	fake *daemontest.Claimer
	sock string
	stop func()
}

const clusterBlockBits = 28

func newClusterEnv(t *testing.T) *clusterEnv {
	e := &clusterEnv{env: newEnv(t, "1.1.0"), fake: &daemontest.Claimer{}}
	e.sock = filepath.Join(t.TempDir(), "run", "zonenetd.sock")
	e.conf.Extra = map[string]any{"store": "etcd", "daemonSocket": e.sock, "blockSize": clusterBlockBits}
	e.startDaemon()
	return e
}

// startDaemon serves the local endpoint until stopDaemon or the test's end.
func (e *clusterEnv) startDaemon() {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.NewLocalServer(e.dataDir, e.fake, nil).Serve(ctx, e.sock) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("zonenetd endpoint: %v", err)
			}
		})
	}
	t.Cleanup(e.stop)
	c := api.Client{Socket: e.sock, Timeout: time.Second}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := c.Health(ctx); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("zonenetd endpoint did not come up on %s", e.sock)
		}
	}
}

func (e *clusterEnv) stopDaemon() {
	e.stop()
	if _, err := os.Stat(e.sock); err == nil {
		e.t.Fatalf("socket %s still there with the daemon stopped", e.sock)
	}
}

func (e *clusterEnv) storeBlocks(zone string) []netip.Prefix {
	e.t.Helper()
	s, err := ipam.Open(ipam.PathIn(e.dataDir), 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	b, err := s.Blocks(e.conf.Name, zone)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// addErr runs ADD for c and returns its CNI error (nil on success).
func (e *clusterEnv) addErr(c *ctr) *types.Error {
	e.t.Helper()
	_, cerr := e.run("ADD", c, c.Conf)
	return cerr
}

// usable counts the addresses the plugin may hand out in block b of zone
// subnet sn with gateway gw: all but the subnet's network and broadcast
// addresses and the gateway.
func usable(b, sn netip.Prefix, gw netip.Addr) int {
	n := 0
	for a := b.Addr(); b.Contains(a); a = a.Next() {
		if a != sn.Addr() && a != cnitest.Nth(sn, 255) && a != gw {
			n++
		}
	}
	return n
}

// TestClusterParallelAdds: 40 ADDs at once on a node with no block get
// distinct addresses inside the blocks zonenetd claimed, and it claims
// only as many blocks as 40 addresses need.
func TestClusterParallelAdds(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.fake.Delay = 20 * time.Millisecond // a cluster round trip, so claims overlap
	z := e.conf.Zones[0]
	sn := netip.MustParsePrefix(z.Subnet)
	const n = 40
	ctrs := make([]*ctr, n)
	for i := range ctrs {
		ctrs[i] = e.newCtr()
	}
	errs := make([]*types.Error, n)
	outs := make([][]byte, n)
	var wg sync.WaitGroup
	for i, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = cnitest.Exec(t, e.call("ADD", c, c.Conf))
		}()
	}
	wg.Wait()

	claimed := e.fake.Claimed()
	seen := map[netip.Addr]string{}
	for i, c := range ctrs {
		if errs[i] != nil {
			t.Errorf("ADD %s: code %d: %s", c.ID, errs[i].Code, errs[i].Msg)
			continue
		}
		res, err := cnitest.ParseResultErr("1.1.0", outs[i])
		if err != nil || len(res.IPs) != 1 {
			t.Errorf("ADD %s: result %v: %s", c.ID, err, outs[i])
			continue
		}
		ip, _ := netip.AddrFromSlice(res.IPs[0].Address.IP)
		ip = ip.Unmap()
		if other, dup := seen[ip]; dup {
			t.Errorf("%s handed out twice: %s and %s", ip, other, c.ID)
		}
		seen[ip] = c.ID
		if !slices.ContainsFunc(claimed, func(b netip.Prefix) bool { return b.Contains(ip) }) {
			t.Errorf("%s got %s, outside the claimed blocks %v", c.ID, ip, claimed)
		}
		if ip == zoneGateway(z) {
			t.Errorf("%s got the zone's gateway %s", c.ID, ip)
		}
	}
	// The fewest blocks, in order, that hold 40 addresses.
	want, room := 0, 0
	for ; room < n; want++ {
		room += usable(daemontest.NthBlock(sn, clusterBlockBits, want), sn, zoneGateway(z))
	}
	if len(claimed) != want || e.fake.Calls() != want {
		t.Errorf("%d ADDs made %d claims (%v), want %d", n, e.fake.Calls(), claimed, want)
	}
	if got := e.storeBlocks(z.Name); !slices.Equal(got, claimed) {
		t.Errorf("store holds blocks %v, claimed %v", got, claimed)
	}
	if got := len(e.leases()); got != n {
		t.Errorf("%d leases in the store, want %d", got, n)
	}
	e.expectAttached(ctrs[0], z)
	for _, k := range []string{"net/ipv4/conf/" + z.Bridge + "/proxy_arp", "net/ipv4/neigh/" + z.Bridge + "/proxy_delay"} {
		if v, want := e.host.Sysctl(t, k), map[bool]string{true: "1", false: "0"}[strings.HasSuffix(k, "proxy_arp")]; v != want {
			t.Errorf("%s = %s, want %s", k, v, want)
		}
	}
}

// TestClusterDaemonDown: with zonenetd stopped, ADD works while a block
// has room, fails with code 11 naming zonenetd when it needs a block,
// STATUS says 50, and DEL still releases. An unreachable cluster store is
// code 11 too.
func TestClusterDaemonDown(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	z := &e.conf.Zones[0]
	sn := netip.MustParsePrefix(z.Subnet)
	// The first /28 keeps two addresses: .2 and .3 (.0 is the network,
	// .1 the gateway, .4-.15 excluded).
	for i := 4; i < 16; i++ {
		z.Exclude = append(z.Exclude, cnitest.Nth(sn, i).String())
	}
	a, b, c, d := e.newCtr(), e.newCtr(), e.newCtr(), e.newCtr()
	for _, x := range []*ctr{a, b, c, d} {
		x.Conf = e.conf
	}
	if cerr := e.status(); cerr != nil {
		t.Fatalf("STATUS with zonenetd up: code %d: %s", cerr.Code, cerr.Msg)
	}
	e.add(a)
	attA := e.expectAttached(a, *z)
	if attA.ip4() != cnitest.Nth(sn, 2) || e.fake.Calls() != 1 {
		t.Fatalf("first ADD got %s after %d claims, want %s after 1", attA.ip4(), e.fake.Calls(), cnitest.Nth(sn, 2))
	}

	e.stopDaemon()
	e.add(b) // room in the block: the daemon is not asked
	if attB := e.expectAttached(b, *z); attB.ip4() != cnitest.Nth(sn, 3) {
		t.Errorf("ADD with zonenetd down got %s, want %s", attB.ip4(), cnitest.Nth(sn, 3))
	}
	before := e.snapshot()
	cerr := e.addErr(c)
	expectCode(t, "ADD needing a block with zonenetd down", cerr, types.ErrTryAgainLater)
	if want := "zonenetd is not running (no socket at " + e.sock + "): start zonenetd on this node"; !strings.Contains(cerr.Msg, want) {
		t.Errorf("message %q lacks %q", cerr.Msg, want)
	}
	e.expectSame(before, "the failed ADD")
	cerr = e.status()
	expectCode(t, "STATUS with zonenetd down", cerr, types.ErrPluginNotAvailable)
	if cerr != nil && !strings.Contains(cerr.Msg, "start zonenetd") {
		t.Errorf("STATUS message %q does not say to start zonenetd", cerr.Msg)
	}
	e.del(a)
	e.expectDetached(a, attA)
	e.add(c) // a's address is free again; still no daemon
	if attC := e.expectAttached(c, *z); attC.ip4() != attA.ip4() {
		t.Errorf("ADD after DEL got %s, want the released %s", attC.ip4(), attA.ip4())
	}

	// zonenetd back, etcd unreachable: the block cannot be claimed.
	e.fake.Fail(daemon.ErrStoreUnreachable)
	e.startDaemon()
	if cerr := e.status(); cerr != nil {
		t.Errorf("STATUS with zonenetd up: code %d: %s", cerr.Code, cerr.Msg)
	}
	cerr = e.addErr(d)
	expectCode(t, "ADD needing a block with etcd unreachable", cerr, types.ErrTryAgainLater)
	if cerr != nil && !strings.Contains(cerr.Msg, "cluster store unreachable") {
		t.Errorf("message %q does not say the cluster store is unreachable", cerr.Msg)
	}
	e.fake.Fail(nil)
	e.add(d)
	if attD := e.expectAttached(d, *z); !daemontest.NthBlock(sn, clusterBlockBits, 1).Contains(attD.ip4()) {
		t.Errorf("ADD with etcd back got %s, want an address of the second block", attD.ip4())
	}
	if got := e.storeBlocks(z.Name); len(got) != 2 {
		t.Errorf("store holds blocks %v, want two", got)
	}

	// Static addresses: only inside a block this node owns.
	in, out := cnitest.Nth(sn, 20), cnitest.Nth(sn, 100)
	f, g := e.newCtr(), e.newCtr()
	f.Args, g.Args = "IP="+in.String(), "IP="+out.String()
	e.add(f)
	if attF := e.expectAttached(f, *z); attF.ip4() != in {
		t.Errorf("static %s in a block of this node: got %s", in, attF.ip4())
	}
	cerr = e.addErr(g)
	expectCode(t, "static address outside this node's blocks", cerr, types.ErrInvalidEnvironmentVariables)
	if cerr != nil && (!strings.Contains(cerr.Msg, out.String()) || !strings.Contains(cerr.Msg, "not inside a block this node owns")) {
		t.Errorf("message %q does not say %s is outside this node's blocks", cerr.Msg, out)
	}
}

// TestClusterProxyARP: a container reaches an address of its zone that
// lives on another node, routed (as the overlay does) by a block route
// more specific than the bridge's subnet, because the bridge answers ARP
// for it; without proxy ARP it does not, and an ADD puts it back.
func TestClusterProxyARP(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	z := e.conf.Zones[0]
	sn := netip.MustParsePrefix(z.Subnet)
	a := e.newCtr()
	e.add(a)
	e.expectAttached(a, z)

	// "Another node": a namespace behind a veth, holding an address of a
	// block this node does not own, with the block routed to it.
	remote := cnitest.NewNS(t, "znt-rem")
	remoteBlock := daemontest.NthBlock(sn, clusterBlockBits, 12)
	far := cnitest.Nth(remoteBlock, 2)
	cnitest.Connect(t, e.host, "169.254.77.1/30", remote, "169.254.77.2/30")
	remote.AddDummy(t, cnitest.Unique(t, "rd"), far.String()+"/32")
	remote.Run(t, "ip", "route", "add", "default", "via", "169.254.77.1")
	e.host.Run(t, "ip", "route", "add", remoteBlock.String(), "via", "169.254.77.2")
	srv := cnitest.EchoTCP(t, remote, hostPort(far, 7100), "far")

	cnitest.ExpectTCP(t, a.NS, srv, "far")

	proxyARP := "net/ipv4/conf/" + z.Bridge + "/proxy_arp"
	e.host.Run(t, "sysctl", "-qw", strings.ReplaceAll(proxyARP, "/", ".")+"=0")
	a.NS.Run(t, "ip", "neigh", "flush", "all")
	cnitest.ExpectNoTCP(t, a.NS, srv)

	e.add(e.newCtr()) // the zone setup finds proxy ARP off and repairs it
	if v := e.host.Sysctl(t, proxyARP); v != "1" {
		t.Fatalf("%s = %s after an ADD, want 1", proxyARP, v)
	}
	a.NS.Run(t, "ip", "neigh", "flush", "all")
	cnitest.ExpectTCP(t, a.NS, srv, "far")
}
