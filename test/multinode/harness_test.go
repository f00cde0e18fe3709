//go:build linux

// Package multinode runs zonenet as a cluster on one machine: an underlay
// namespace holding a bridge and the cluster's etcd, and per node a
// namespace plugged into that bridge that runs its own zonenetd (the real
// binary) and gets its containers from the real zonenet plugin, in cluster
// mode. Everything is made for the test under unique names, and removed
// when it ends, failed or not; processes are ended by their PID.
package multinode

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/zonenet/zonenet/pki"
	"github.com/zonenet/zonenet/test/cnitest"
)

func TestMain(m *testing.M) {
	code := cnitest.Main(m)
	if daemonDir != "" {
		_ = os.RemoveAll(daemonDir)
	}
	os.Exit(code)
}

// Timing of the tests: a short lease keeps the package quick; the checks
// are relative to it.
const (
	nodeTTL   = 4 * time.Second
	blockBits = 27
	cniVer    = "1.1.0"
)

type testCluster struct {
	t        *testing.T
	bins     cnitest.Bins
	zonenetd string
	ul       *cnitest.NS
	bridge   string
	ulNet    netip.Prefix
	etcd     *etcdServer
	pkiDir   string
	ca       *pki.CA
	network  string
	zones    []string
	subnets  map[string]netip.Prefix
	policy   string // file
	grace    time.Duration
	nodes    []*tnode

	// nodePolicy: each node has its own copy of policy, as separate
	// machines do, rather than the one file all share.
	nodePolicy bool
}

// opts shape a test's cluster.
type opts struct {
	nodes  int
	policy string
	// grace is the nodes' reclaim grace; 0 leaves zonenetd's default.
	grace time.Duration

	nodePolicy bool
}

// newCluster makes the underlay, etcd and the nodes with zonenetd running
// and registered, and waits until every node has every other as a peer.
func newCluster(t *testing.T, o opts) *testCluster {
	t.Helper()
	cnitest.RequireRoot(t)
	c := &testCluster{t: t, bins: cnitest.Build(t), zonenetd: buildDaemon(t), ulNet: cnitest.Subnet4(t),
		network: cnitest.Unique(t, "mn"), zones: []string{"frontend", "backend", "mgmt"},
		subnets: map[string]netip.Prefix{}, pkiDir: t.TempDir(), grace: o.grace, nodePolicy: o.nodePolicy}
	if c.bins.Ctl == "" {
		t.Fatal("zonenetctl is not part of the build")
	}
	for _, z := range c.zones {
		c.subnets[z] = cnitest.Subnet4(t)
	}
	c.policy = filepath.Join(c.pkiDir, "policy.yaml")
	if err := os.WriteFile(c.policy, []byte(o.policy), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.ca, err = pki.NewCA(pki.CASpec{Name: "multinode CA"}); err != nil {
		t.Fatal(err)
	}
	if err := c.ca.Write(c.pkiDir, false); err != nil {
		t.Fatal(err)
	}
	c.issue("operator")
	c.ul = cnitest.NewNS(t, "znt-mnul")
	c.bridge = cnitest.Unique(t, "mnb")
	etcdAddr := cnitest.Nth(c.ulNet, 254)
	c.do(c.ul, func(h *netlink.Handle) error {
		// A bridge without an address of its own takes the lowest MAC of
		// its ports, and changes it when that port goes: a node that dies
		// would move etcd's MAC away from under the ARP caches of the
		// others. Real hosts keep their MAC.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: c.bridge,
			HardwareAddr: net.HardwareAddr{0x02, 0x7a, 0x6e, 0x00, 0x00, 0x01}}}
		if err := h.LinkAdd(br); err != nil {
			return err
		}
		a, _ := netlink.ParseAddr(netip.PrefixFrom(etcdAddr, c.ulNet.Bits()).String())
		if err := h.AddrAdd(br, a); err != nil {
			return err
		}
		return h.LinkSetUp(br)
	})
	c.etcd = startEtcd(t, c.ul, etcdAddr, c.ca, c.pkiDir)
	for i := 0; i < o.nodes; i++ {
		nd := c.newNode(fmt.Sprintf("node%d", i+1), cnitest.Nth(c.ulNet, i+1))
		nd.boot()
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.waitHealthy(20 * time.Second)
	}
	c.waitConverged(20 * time.Second)
	return c
}

// buildDaemon returns zonenetd: from ZONENET_BIN's directory when it holds
// one (make test-root), else built once for the package.
var (
	daemonOnce sync.Once
	daemonBin  string
	daemonDir  string
	daemonErr  error
)

func buildDaemon(t *testing.T) string {
	t.Helper()
	daemonOnce.Do(func() {
		if d := os.Getenv("ZONENET_BIN"); d != "" {
			if st, err := os.Stat(filepath.Join(d, "zonenetd")); err == nil && !st.IsDir() {
				daemonBin, _ = filepath.Abs(filepath.Join(d, "zonenetd"))
				return
			}
		}
		root, err := cnitest.ModuleRoot()
		if err != nil {
			daemonErr = err
			return
		}
		if daemonDir, err = os.MkdirTemp("", "zonenetd-bin-"); err != nil {
			daemonErr = err
			return
		}
		daemonBin = filepath.Join(daemonDir, "zonenetd")
		cmd := exec.Command("go", "build", "-o", daemonBin, "./cmd/zonenetd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			daemonErr = fmt.Errorf("go build ./cmd/zonenetd: %w\n%s", err, out)
		}
	})
	if daemonErr != nil {
		t.Fatal(daemonErr)
	}
	return daemonBin
}

// issue writes a certificate of the cluster's CA for name.
func (c *testCluster) issue(name string) pki.Files {
	c.t.Helper()
	p, err := c.ca.Issue(pki.CertSpec{Name: name})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := p.Write(c.pkiDir, name, true); err != nil {
		c.t.Fatal(err)
	}
	return pki.DirFiles(c.pkiDir, name)
}

func (c *testCluster) do(ns *cnitest.NS, fn func(h *netlink.Handle) error) {
	c.t.Helper()
	if err := ns.WithHandle(fn); err != nil {
		c.t.Fatalf("in %s: %v", ns.Name, err)
	}
}

// plug gives ns a veth into the underlay bridge holding addr.
func (c *testCluster) plug(ns *cnitest.NS, addr netip.Addr) {
	c.t.Helper()
	ulEnd, nodeEnd := cnitest.Unique(c.t, "mnu"), cnitest.Unique(c.t, "mnn")
	nh, err := vnetns.GetFromPath(ns.Path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer nh.Close()
	c.do(c.ul, func(h *netlink.Handle) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ulEnd}, PeerName: nodeEnd, PeerNamespace: netlink.NsFd(int(nh))}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		l, err := h.LinkByName(ulEnd)
		if err != nil {
			return err
		}
		br, err := h.LinkByName(c.bridge)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(l, br); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	c.do(ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(nodeEnd)
		if err != nil {
			return err
		}
		a, _ := netlink.ParseAddr(netip.PrefixFrom(addr, c.ulNet.Bits()).String())
		if err := h.AddrAdd(l, a); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
}

// pluginConf is the zonenet entry of the network for one node, as a
// runtime hands it to the plugin.
func (c *testCluster) pluginConf(dataDir, socket string) map[string]any {
	var zones []map[string]any
	for _, z := range c.zones {
		zones = append(zones, map[string]any{"name": z, "subnet": c.subnets[z].String()})
	}
	return map[string]any{
		"cniVersion": cniVer, "name": c.network, "type": "zonenet",
		"mode": "bridge", "dataDir": dataDir, "ipMasq": false,
		"store": "etcd", "daemonSocket": socket, "blockSize": blockBits,
		"zones": zones, "policy": c.policy,
	}
}

func (c *testCluster) conflist(plugin map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"cniVersion": cniVer, "name": c.network, "plugins": []any{plugin}})
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// waitConverged waits until every running node has exactly the other
// running nodes as overlay peers, with routes to all their blocks.
func (c *testCluster) waitConverged(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := c.converged()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("overlay not converged after %s: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// converged says what is missing, or "".
func (c *testCluster) converged() string {
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		st := n.snapshot()
		for _, o := range c.nodes {
			if o == n || !o.running() {
				continue
			}
			if !st.hasPeer(o) {
				return fmt.Sprintf("%s lacks the entries of %s", n.name, o.name)
			}
			for _, b := range o.blocks() {
				if !st.routes(b, o.underlay) {
					return fmt.Sprintf("%s lacks the route to %s of %s", n.name, b, o.name)
				}
			}
		}
	}
	return ""
}

func (c *testCluster) running() []*tnode {
	var out []*tnode
	for _, n := range c.nodes {
		if n.running() {
			out = append(out, n)
		}
	}
	return out
}
