package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/test/netdelay"
)

// The cluster demo runs the reference network on three nodes, each a
// network namespace with its own zonenetd, plugged into an underlay
// namespace that holds a bridge and the cluster's etcd. Every node is a
// Demo whose host namespace is the node, so attaching, probing and the
// leak checks of teardown are the single-host demo's; this file adds what
// a cluster needs around them: the underlay, the TLS material, etcd, one
// daemon per node and the delays that put the nodes continents apart.

// ClusterConfig is what NewCluster needs. Plugin, Zonenetd and Ctl are
// required.
type ClusterConfig struct {
	Plugin   string // the zonenet plugin binary
	Zonenetd string // the node daemon binary
	// Ctl is zonenetctl, run in the underlay namespace for the nodes
	// table (`zonenetctl status --etcd`).
	Ctl string
	// Etcd is the etcd binary; default "etcd" in PATH.
	Etcd string
	// Nodes default to ReferenceNodes().
	Nodes []NodeSpec
	// Delays between the nodes; nil adds none.
	Delays []Delay
	// Policy is the network's policy document; nil installs none.
	Policy []byte
	// Ports every container listens on and the matrix probes; default
	// DefaultPorts.
	Ports []int
	// Prefix starts every namespace name; default "zncl".
	Prefix string
	// RunID makes names unique; default the process id.
	RunID string
	// DialTimeout bounds one probe; default 2 s, room for a round trip
	// across the delays and one lost SYN.
	DialTimeout time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Cluster is one instance of the cluster demo. Setup builds it, Teardown
// removes it; Teardown is safe at any point and more than once.
type Cluster struct {
	cfg    ClusterConfig
	topo   Topology
	policy *conf.Policy
	// Nodes are in the order of the configuration.
	Nodes []*Node

	ulName   string
	etcdAddr netip.Addr

	mu       sync.Mutex
	dir      string // TLS material, etcd's data, daemon logs
	ulMade   bool
	etcd     *proc
	delayers []*netdelay.Delayer
}

// Node is one node of a running cluster demo.
type Node struct {
	NodeSpec
	Demo   *Demo
	dir    string
	socket string
	daemon *proc
}

// NewCluster validates the configuration and names everything; it creates
// nothing.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	for _, b := range []struct{ what, path string }{{"plugin", cfg.Plugin}, {"zonenetd", cfg.Zonenetd}, {"zonenetctl", cfg.Ctl}} {
		if b.path == "" {
			return nil, fmt.Errorf("cluster demo: no %s binary", b.what)
		}
	}
	if cfg.Nodes == nil {
		cfg.Nodes = ReferenceNodes()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "zncl"
	}
	if cfg.RunID == "" {
		cfg.RunID = strconv.Itoa(os.Getpid())
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := checkNodes(cfg.Nodes, cfg.Delays); err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:      cfg,
		topo:     Reference(),
		ulName:   fmt.Sprintf("%s-underlay-%s", cfg.Prefix, cfg.RunID),
		etcdAddr: nthAddr(ClusterUnderlay, 1),
	}
	c.topo.Containers = nil
	if cfg.Policy != nil {
		pol, err := c.topo.parsePolicy(cfg.Policy)
		if err != nil {
			return nil, err
		}
		c.policy = pol
	}
	for _, spec := range cfg.Nodes {
		topo := c.topo
		topo.Containers = spec.Containers
		n := &Node{NodeSpec: spec}
		d, err := New(Config{
			Plugin: cfg.Plugin, Topology: &topo, Prefix: cfg.Prefix, RunID: spec.Name + "-" + cfg.RunID,
			Ports: cfg.Ports, Policy: cfg.Policy, DialTimeout: cfg.DialTimeout, Log: cfg.Log,
			// The socket is set once the run's directory exists.
			NetConfExtra: map[string]any{"store": "etcd"},
		})
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", spec.Name, err)
		}
		n.Demo = d
		c.Nodes = append(c.Nodes, n)
	}
	return c, nil
}

func (c *Cluster) logf(format string, args ...any) { fmt.Fprintf(c.cfg.Log, format+"\n", args...) }

// Underlay returns the name of the underlay namespace.
func (c *Cluster) Underlay() string { return c.ulName }

// EtcdEndpoint is etcd's client URL, reachable from the underlay and the
// nodes only.
func (c *Cluster) EtcdEndpoint() string { return fmt.Sprintf("https://%s:%d", c.etcdAddr, etcdPort) }

// Containers returns every container of every node, node by node.
func (c *Cluster) Containers() []*Container {
	var out []*Container
	for _, n := range c.Nodes {
		out = append(out, n.Demo.Containers...)
	}
	return out
}

// Setup builds the cluster: TLS material, the underlay with etcd, the
// nodes with their daemons, the delays, then the containers, and waits
// until every node routes to every other node's containers. It runs once;
// on error the caller still calls Teardown.
func (c *Cluster) Setup(ctx context.Context) error {
	c.mu.Lock()
	again := c.dir != ""
	c.mu.Unlock()
	if again {
		return errors.New("cluster demo: Setup called twice")
	}
	dir, err := os.MkdirTemp("", c.cfg.Prefix+"-run-")
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.dir = dir
	c.mu.Unlock()
	if err := c.makePKI(); err != nil {
		return err
	}
	if err := c.makeUnderlay(); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := c.bootNode(ctx, n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	for _, n := range c.Nodes {
		if err := n.waitHealthy(ctx, 30*time.Second); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	c.logf("etcd and %d zonenetd up", len(c.Nodes))
	if err := c.startDelays(); err != nil {
		return err
	}
	if err := c.attach(ctx); err != nil {
		return err
	}
	return c.waitConverged(ctx, 20*time.Second)
}

// bootNode makes the node's namespaces, plugs it into the underlay and
// starts its zonenetd on the network's configuration.
func (c *Cluster) bootNode(ctx context.Context, n *Node) error {
	n.dir = filepath.Join(c.dir, n.Name)
	if err := os.Mkdir(n.dir, 0o755); err != nil {
		return err
	}
	n.socket = filepath.Join(n.dir, "zonenetd.sock")
	n.Demo.cfg.NetConfExtra["daemonSocket"] = n.socket
	if err := n.Demo.Prepare(ctx); err != nil {
		return err
	}
	if err := c.plug(n); err != nil {
		return err
	}
	// The plugin's configuration is also the daemon's: zonenetd takes a
	// single plugin object as well as a conflist.
	confPath := filepath.Join(n.dir, "net.conf")
	if err := os.WriteFile(confPath, n.Demo.NetConf(), 0o644); err != nil {
		return err
	}
	files := c.files(n.Name)
	p, err := startIn(n.Demo.HostNetns(), filepath.Join(n.dir, "zonenetd.log"), c.cfg.Zonenetd,
		"--node-name", n.Name, "--underlay-address", n.Underlay.String(), "--conflist", confPath,
		"--etcd-endpoints", c.EtcdEndpoint(), "--etcd-ca", files.CA, "--etcd-cert", files.Cert, "--etcd-key", files.Key)
	if err != nil {
		return fmt.Errorf("start zonenetd: %w", err)
	}
	n.daemon = p
	c.logf("node %s: namespace %s, underlay %s, zonenetd pid %d", n.Name, n.Demo.HostNetns(), n.Underlay, p.pid())
	return nil
}

// attach attaches the first node's containers alone, so that it claims the
// first block of every zone (the static address of the reference lies in
// one), then the other nodes' all at once.
func (c *Cluster) attach(ctx context.Context) error {
	if err := c.Nodes[0].Demo.Attach(ctx); err != nil {
		return fmt.Errorf("node %s: %w", c.Nodes[0].Name, err)
	}
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes[1:] {
		wg.Go(func() {
			if err := n.Demo.Attach(ctx); err != nil {
				errs[i+1] = fmt.Errorf("node %s: %w", n.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Teardown stops the delays and the daemons by PID, unplugs the nodes,
// detaches every container (DEL and GC need no daemon) and checks that
// nothing was left on the nodes, removes the node namespaces, stops etcd,
// removes the underlay and the run's directory, and checks that no
// namespace of the run is left. It does every step even when one fails.
func (c *Cluster) Teardown() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	t := time.Now()
	for _, d := range c.delayers {
		if err := d.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.delayers) > 0 {
		c.logf("stopped %d delays in %s", len(c.delayers), time.Since(t).Round(time.Millisecond))
	}
	c.delayers = nil
	for _, n := range c.Nodes {
		t := time.Now()
		if n.daemon != nil && n.daemon.running() {
			c.logf("stopping zonenetd on %s (pid %d)", n.Name, n.daemon.pid())
		}
		if err := n.daemon.stop(10 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("node %s: zonenetd: %w", n.Name, err))
		} else if n.daemon != nil {
			c.logf("zonenetd on %s stopped in %s", n.Name, time.Since(t).Round(time.Millisecond))
		}
	}
	// The underlay veth is the demo's, not the plugin's: it goes before
	// the node's leak check, which counts every veth left on the node.
	if c.ulMade {
		if err := c.unplug(); err != nil {
			errs = append(errs, err)
		}
	}
	// The nodes share nothing the plugin touches, so they are detached
	// side by side, as separate machines would be.
	detached := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() {
			t := time.Now()
			if err := n.Demo.Detach(); err != nil {
				detached[i] = fmt.Errorf("node %s: %w", n.Name, err)
			} else if n.Demo.NetConf() != nil {
				c.logf("node %s: containers detached, GC run, nothing left (%s)", n.Name, time.Since(t).Round(time.Millisecond))
			}
		})
	}
	wg.Wait()
	errs = append(errs, detached...)
	for _, n := range c.Nodes {
		if err := n.Demo.Remove(); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
		}
	}
	if err := c.etcd.stop(10 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("etcd: %w", err))
	}
	if c.ulMade {
		if err := netns.Delete(c.ulName); err != nil {
			errs = append(errs, err)
		} else {
			c.ulMade = false
		}
	}
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.dir, err))
		}
	}
	if left := c.leftNamespaces(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left after teardown: %s", strings.Join(left, " ")))
	}
	return errors.Join(errs...)
}

// Namespaces returns every namespace the run uses: the underlay, then each
// node's own and its containers'.
func (c *Cluster) Namespaces() []string {
	out := []string{c.ulName}
	for _, n := range c.Nodes {
		out = append(out, n.Demo.Namespaces()...)
	}
	return out
}

// leftNamespaces lists the run's namespaces that still exist.
func (c *Cluster) leftNamespaces() []string {
	var left []string
	for _, name := range c.Namespaces() {
		if _, err := os.Stat(netns.Path(name)); err == nil {
			left = append(left, name)
		}
	}
	slices.Sort(left)
	return left
}
