package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/netns"
)

// IfName is the interface name every demo container gets.
const IfName = "eth0"

// Config is what New needs. Only Plugin is required.
type Config struct {
	// Plugin is the path of the zonenet binary.
	Plugin string
	// Topology defaults to Reference().
	Topology *Topology
	// Prefix starts every namespace name; default "zndemo".
	Prefix string
	// RunID makes names unique; default the process id.
	RunID string
	// Ports are where every container (and the host) listens and what
	// the matrix probes; default DefaultPorts.
	Ports []int
	// Policy is the policy document the network gets ("policy" in the
	// configuration); nil installs none, so everything is allowed.
	Policy []byte
	// DialTimeout bounds one probe; default 1 s.
	DialTimeout time.Duration
	// PluginTimeout bounds one plugin exec; default 30 s.
	PluginTimeout time.Duration
	// Parallel attaches the containers concurrently, as a busy node would.
	Parallel bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// NetConfExtra are keys added to the plugin configuration, for what
	// the topology does not describe: cluster mode's store and socket.
	NetConfExtra map[string]any
}

// Container is one demo container and what the plugin gave it.
type Container struct {
	ContainerSpec
	ID        string // CNI container ID (64 hex digits)
	Netns     string // namespace name
	NetnsPath string
	IP        netip.Prefix
	Gateway   netip.Addr
	MAC       string
	HostVeth  string
	Err       error // the ADD failure, if any
}

// Demo is one instance of the topology. Setup builds it, Probe measures it,
// Teardown removes it; Teardown is safe to call at any point and more than
// once.
type Demo struct {
	cfg      Config
	topo     Topology
	plugin   Plugin
	conf     []byte
	hostName string
	hostPath string
	dataDir  string
	policy   *conf.Policy

	Containers []*Container

	mu         sync.Mutex
	nsMade     []string // namespaces to delete, creation order
	attempted  []*Container
	listeners  []net.Listener
	needGC     bool
	dataDirSet bool
}

// New validates the configuration and names everything; it creates nothing.
func New(cfg Config) (*Demo, error) {
	if cfg.Plugin == "" {
		return nil, errors.New("demo: no plugin binary")
	}
	topo := Reference()
	if cfg.Topology != nil {
		topo = *cfg.Topology
	}
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "zndemo"
	}
	if cfg.RunID == "" {
		cfg.RunID = strconv.Itoa(os.Getpid())
	}
	if len(cfg.Ports) == 0 {
		cfg.Ports = DefaultPorts
	}
	cfg.Ports = slices.Clone(cfg.Ports)
	for _, p := range cfg.Ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("demo: %d is not a TCP port", p)
		}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	d := &Demo{
		cfg:      cfg,
		topo:     topo,
		hostName: fmt.Sprintf("%s-host-%s", cfg.Prefix, cfg.RunID),
	}
	if cfg.Policy != nil {
		pol, err := topo.parsePolicy(cfg.Policy)
		if err != nil {
			return nil, err
		}
		d.policy = pol
	}
	d.hostPath = netns.Path(d.hostName)
	d.plugin = Plugin{Path: cfg.Plugin, HostNetns: d.hostPath, Timeout: cfg.PluginTimeout}
	for _, s := range topo.Containers {
		sum := sha256.Sum256([]byte(cfg.Prefix + "/" + cfg.RunID + "/" + s.Name))
		name := fmt.Sprintf("%s-%s-%s", cfg.Prefix, s.Name, cfg.RunID)
		d.Containers = append(d.Containers, &Container{
			ContainerSpec: s,
			ID:            hex.EncodeToString(sum[:]),
			Netns:         name,
			NetnsPath:     netns.Path(name),
		})
	}
	return d, nil
}

// Topology returns the topology being built.
func (d *Demo) Topology() Topology { return d.topo }

// HostNetns returns the name of the namespace that plays the host.
func (d *Demo) HostNetns() string { return d.hostName }

// Namespaces returns the names of every namespace the demo uses.
func (d *Demo) Namespaces() []string {
	out := []string{d.hostName}
	for _, c := range d.Containers {
		out = append(out, c.Netns)
	}
	return out
}

// attemptedCount is the number of containers an ADD was tried for and
// not yet detached.
func (d *Demo) attemptedCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.attempted)
}

// DataDir returns the plugin's data directory (empty before Setup).
func (d *Demo) DataDir() string { return d.dataDir }

func (d *Demo) logf(format string, args ...any) { fmt.Fprintf(d.cfg.Log, format+"\n", args...) }

// Setup creates the namespaces, attaches every container through the
// plugin and starts the listeners. It runs once; on error the caller still
// calls Teardown.
func (d *Demo) Setup(ctx context.Context) error {
	if err := d.Prepare(ctx); err != nil {
		return err
	}
	return d.Attach(ctx)
}

// Prepare is the first half of Setup: the data directory, the plugin
// configuration and the namespaces, with nothing attached yet, so that a
// caller can bring up what the host needs first (a node daemon).
func (d *Demo) Prepare(ctx context.Context) error {
	d.mu.Lock()
	again := d.dataDirSet || len(d.nsMade) > 0
	d.mu.Unlock()
	if again {
		return errors.New("demo: Setup called twice")
	}
	dir, err := os.MkdirTemp("", d.cfg.Prefix+"-data-")
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	d.mu.Lock()
	d.dataDir, d.dataDirSet = dir, true
	d.mu.Unlock()
	policyPath := ""
	if d.cfg.Policy != nil {
		policyPath = filepath.Join(dir, policyFile)
		if err := os.WriteFile(policyPath, d.cfg.Policy, 0o644); err != nil {
			return fmt.Errorf("write the policy: %w", err)
		}
	}
	if d.conf, err = d.topo.NetConf(dir, policyPath); err != nil {
		return err
	}
	if d.conf, err = mergeConf(d.conf, d.cfg.NetConfExtra); err != nil {
		return err
	}

	if err := d.makeNetns(d.hostName); err != nil {
		return err
	}
	for _, c := range d.Containers {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := d.makeNetns(c.Netns); err != nil {
			return err
		}
	}
	d.logf("created %d namespaces; host is %s", len(d.Containers)+1, d.hostName)
	return nil
}

// Attach is the second half of Setup: every container through the plugin,
// then the listeners.
func (d *Demo) Attach(ctx context.Context) error {
	if d.conf == nil {
		return errors.New("demo: Attach before Prepare")
	}
	if err := d.attachAll(ctx); err != nil {
		return err
	}
	return d.listen()
}

// NetConf returns the plugin configuration the containers are attached
// with (nil before Prepare).
func (d *Demo) NetConf() []byte { return d.conf }

// mergeConf adds extra's keys to a rendered plugin configuration.
func mergeConf(conf []byte, extra map[string]any) ([]byte, error) {
	if len(extra) == 0 {
		return conf, nil
	}
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		return nil, fmt.Errorf("demo configuration: %w", err)
	}
	maps.Copy(m, extra)
	return json.Marshal(m)
}

func (d *Demo) makeNetns(name string) error {
	if _, err := netns.Create(name); err != nil {
		return err
	}
	d.mu.Lock()
	d.nsMade = append(d.nsMade, name)
	d.mu.Unlock()
	return nil
}

func (d *Demo) attachAll(ctx context.Context) error {
	var errs []error
	if !d.cfg.Parallel {
		for _, c := range d.Containers {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := d.attach(ctx, c); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	var wg sync.WaitGroup
	for _, c := range d.Containers {
		wg.Go(func() { _ = d.attach(ctx, c) })
	}
	wg.Wait()
	for _, c := range d.Containers {
		errs = append(errs, c.Err)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *Demo) invocation(c *Container) Invocation {
	inv := Invocation{ContainerID: c.ID, Netns: c.NetnsPath, IfName: IfName, Config: d.conf}
	// The default zone is reached without CNI_ARGS, as most users will.
	var args []string
	if c.Zone != d.topo.DefaultZone {
		args = append(args, "ZONE="+c.Zone)
	}
	if c.ContainerSpec.IP.IsValid() {
		args = append(args, "IP="+c.ContainerSpec.IP.String())
	}
	inv.Args = strings.Join(args, ";")
	return inv
}

func (d *Demo) attach(ctx context.Context, c *Container) error {
	if err := ctx.Err(); err != nil {
		c.Err = err
		return err
	}
	d.mu.Lock()
	d.attempted = append(d.attempted, c)
	d.needGC = true
	d.mu.Unlock()
	start := time.Now()
	res, err := d.plugin.Add(ctx, d.invocation(c))
	if err != nil {
		c.Err = fmt.Errorf("attach %s: %w", c.Name, err)
		return c.Err
	}
	if err := d.fill(c, res); err != nil {
		c.Err = fmt.Errorf("attach %s: %w", c.Name, err)
		return c.Err
	}
	d.logf("attached %-8s zone %-9s %-15s in %s", c.Name, c.Zone, c.IP, time.Since(start).Round(time.Millisecond))
	return nil
}

// fill copies the plugin's result into c and checks it against the zone.
func (d *Demo) fill(c *Container, res *Result) error {
	idx := res.ContainerIface(IfName)
	if idx >= 0 {
		c.MAC = res.Interfaces[idx].Mac
	}
	ip, gw, ok := res.IPv4(idx)
	if !ok {
		return fmt.Errorf("result has no IPv4 address for %s", IfName)
	}
	c.IP, c.Gateway = ip, gw
	zone, _ := d.topo.Zone(c.Zone)
	if !zone.Subnet.Contains(ip.Addr()) {
		return fmt.Errorf("got %s, outside zone %s (%s)", ip, zone.Name, zone.Subnet)
	}
	if !c.Gateway.IsValid() {
		// The result may omit it; the contract says the first usable address.
		c.Gateway = zone.Subnet.Masked().Addr().Next()
	}
	c.HostVeth = d.hostVeth(res.HostSide())
	return nil
}

// hostVeth picks the veth among the host-side interfaces of a result.
func (d *Demo) hostVeth(names []string) string {
	var veth string
	_ = netns.Do(d.hostPath, func() error {
		for _, n := range names {
			if l, err := netlink.LinkByName(n); err == nil && l.Type() == "veth" {
				veth = n
				return nil
			}
		}
		return nil
	})
	return veth
}

// listen starts a greeter on every port in every attached container and in
// the host namespace, where it answers on all gateway addresses.
func (d *Demo) listen() error {
	start := func(path, name string) error {
		for _, port := range d.cfg.Ports {
			l, err := netns.ListenTCP(path, ":"+strconv.Itoa(port))
			if err != nil {
				return fmt.Errorf("listen in %s: %w", name, err)
			}
			d.mu.Lock()
			d.listeners = append(d.listeners, l)
			d.mu.Unlock()
			go Greeter(l, name)
		}
		return nil
	}
	if err := start(d.hostPath, GatewayName); err != nil {
		return err
	}
	for _, c := range d.Containers {
		if c.Err == nil {
			if err := start(c.NetnsPath, c.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// Endpoints returns the rows (attached containers) and columns (the same
// containers plus the host gateway) of the reachability matrix.
func (d *Demo) Endpoints() (rows, cols []Endpoint) {
	for _, c := range d.Containers {
		if c.Err != nil || !c.IP.IsValid() {
			continue
		}
		rows = append(rows, Endpoint{Name: c.Name, Zone: c.Zone, Netns: c.NetnsPath, Addr: c.IP.Addr(), Gateway: c.Gateway})
	}
	cols = append(slices.Clone(rows), Endpoint{Name: GatewayName, IsGateway: true})
	return rows, cols
}

// Probe measures one matrix per port with real TCP connects, all ports at
// once.
func (d *Demo) Probe(ctx context.Context) []Matrix {
	rows, cols := d.Endpoints()
	out := make([]Matrix, len(d.cfg.Ports))
	var wg sync.WaitGroup
	for i, port := range d.cfg.Ports {
		wg.Go(func() {
			out[i] = Prober{Port: port, DialTimeout: d.cfg.DialTimeout, Parallel: 64}.Probe(ctx, rows, cols)
		})
	}
	wg.Wait()
	return out
}

// Expected is the matrix the demo's policy predicts for connects to port,
// shaped like m.
func (d *Demo) Expected(m Matrix, port int) Matrix {
	return Expected(m, PolicyTable(d.policy, port))
}
