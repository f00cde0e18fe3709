//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/overlay"
	"github.com/zonenet/zonenet/pki"
)

// The network every node serves: one zone, /26 blocks. Its subnet exists
// only inside the node namespaces.
const (
	network   = "clusterbench"
	zone      = "bench"
	blockBits = 26
)

var zoneSubnet = netip.MustParsePrefix("10.240.0.0/16")

// node is a real node: a namespace plugged into the underlay and the real
// zonenetd running in it.
type node struct {
	b        *bed
	name     string
	prefix   string // the cluster's etcd key prefix
	underlay netip.Addr
	ttl      time.Duration
	dir      string
	files    pki.Files
	ns       string
	d        *proc
	boots    int
}

// peer is what a node must program for another: its underlay address,
// VTEP MAC and blocks.
type peer struct {
	name     string
	underlay netip.Addr
	mac      net.HardwareAddr
	blocks   []netip.Prefix
}

func (n *node) peer(blocks ...netip.Prefix) peer {
	return peer{name: n.name, underlay: n.underlay, mac: overlay.DeriveMAC(n.name), blocks: blocks}
}

func (b *bed) newNode(name, prefix string, underlay netip.Addr, ttl time.Duration) (*node, error) {
	n := &node{b: b, name: name, prefix: prefix, underlay: underlay, ttl: ttl, dir: filepath.Join(b.dir, name)}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	if n.files, err = b.issue(name); err != nil {
		return nil, err
	}
	return n, n.writeConfig()
}

// writeConfig writes the conflist (as a runtime would hold it) and
// zonenetd's configuration.
func (n *node) writeConfig() error {
	plugin := map[string]any{
		"cniVersion": "1.1.0", "name": network, "type": "zonenet", "mode": "bridge",
		"dataDir": filepath.Join(n.dir, "data"), "mtu": 1450, "ipMasq": false,
		"store": "etcd", "daemonSocket": filepath.Join(n.dir, "zonenetd.sock"), "blockSize": blockBits,
		"zones": []any{map[string]any{"name": zone, "subnet": zoneSubnet.String()}},
	}
	cl, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": network, "plugins": []any{plugin}})
	if err != nil {
		return err
	}
	conflist := filepath.Join(n.dir, "net.conflist")
	if err := os.WriteFile(conflist, cl, 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`nodeName: %s
underlayAddress: %s
conflists: [%s]
etcdEndpoints: [%s]
etcdCA: %s
etcdCert: %s
etcdKey: %s
etcdPrefix: %s
nodeTTL: %s
`, n.name, n.underlay, conflist, n.b.etcdURL(), n.files.CA, n.files.Cert, n.files.Key, n.prefix, n.ttl)
	return os.WriteFile(filepath.Join(n.dir, "zonenetd.yaml"), []byte(cfg), 0o644)
}

// boot makes a fresh namespace for the node (a machine that starts) and
// plugs it into the underlay; start then runs zonenetd.
func (n *node) boot() error {
	var err error
	if n.ns, err = n.b.newNS(n.name); err != nil {
		return err
	}
	return n.b.plug(n.ns, n.underlay)
}

// start runs zonenetd in the node's namespace and returns when the
// process is started: the moment convergence is timed from.
func (n *node) start(zonenetd string) (time.Time, error) {
	n.boots++
	p, err := n.b.start(n.ns, fmt.Sprintf("%s-zonenetd-%d", n.name, n.boots), zonenetd, "--config", filepath.Join(n.dir, "zonenetd.yaml"))
	n.d = p
	return time.Now(), err
}

// die kills zonenetd and deletes the namespace: the machine is gone.
func (n *node) die() error {
	n.d.kill()
	return n.b.deleteNS(n.ns)
}

// snapshot reads the node's overlay from its kernel.
func (n *node) snapshot() (overlay.State, error) {
	var st overlay.State
	err := netns.Do(netns.Path(n.ns), func() error {
		var err error
		st, err = overlay.Snapshot(overlay.Config{})
		return err
	})
	return st, err
}

// programmed says what of p the state lacks, or "" when its FDB entry,
// neighbour, one route per block and peer-set member are all there.
func programmed(st overlay.State, p peer) string {
	var miss []string
	if !hasFDB(st, p) {
		miss = append(miss, "fdb")
	}
	if len(p.blocks) > 0 && !hasNeigh(st, p) {
		miss = append(miss, "neigh")
	}
	for _, b := range p.blocks {
		if !hasRoute(st, b, p.underlay) {
			miss = append(miss, "route "+b.String())
		}
	}
	if !inSet(st, p.underlay) {
		miss = append(miss, "peer set")
	}
	return strings.Join(miss, ", ")
}

// mentions counts the entries that still refer to p.
func mentions(st overlay.State, p peer) int {
	k := 0
	for _, e := range st.FDB {
		if e.Dst == p.underlay || e.MAC.String() == p.mac.String() {
			k++
		}
	}
	for _, e := range st.Neighs {
		if e.IP == p.underlay {
			k++
		}
	}
	for _, r := range st.Routes {
		if r.Gw == p.underlay {
			k++
		}
	}
	if inSet(st, p.underlay) {
		k++
	}
	return k
}

func hasFDB(st overlay.State, p peer) bool {
	for _, e := range st.FDB {
		if e.Dst == p.underlay && e.MAC.String() == p.mac.String() {
			return true
		}
	}
	return false
}

func hasNeigh(st overlay.State, p peer) bool {
	for _, e := range st.Neighs {
		if e.IP == p.underlay && e.MAC.String() == p.mac.String() {
			return true
		}
	}
	return false
}

func hasRoute(st overlay.State, b netip.Prefix, gw netip.Addr) bool {
	for _, r := range st.Routes {
		if r.Dst == b && r.Gw == gw {
			return true
		}
	}
	return false
}

func inSet(st overlay.State, a netip.Addr) bool {
	for _, m := range st.PeerSet {
		if m == a {
			return true
		}
	}
	return false
}

// memory reads VmRSS and VmHWM (KiB) of zonenetd from /proc.
func (n *node) memory() (rss, hwm int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", n.d.pid()))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		for _, k := range []struct {
			key string
			v   *int
		}{{"VmRSS:", &rss}, {"VmHWM:", &hwm}} {
			if rest, ok := strings.CutPrefix(s.Text(), k.key); ok {
				*k.v, err = strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
				if err != nil {
					return 0, 0, fmt.Errorf("%s of zonenetd: %q", k.key, s.Text())
				}
			}
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM for zonenetd (pid %d)", n.d.pid())
	}
	return rss, hwm, s.Err()
}
