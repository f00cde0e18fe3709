package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/overlay"
	"github.com/zonenet/zonenet/pki"
)

// Daemon is one zonenetd. Make it with New, then Run it.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	version string
	nets    []network
	served  map[string]bool
	dataDir string
	socket  string
	tls     *tls.Config // client side towards etcd
	st      *state
	dp      *dataplane
	pol     *policyServer

	// Set by Run before anything else reads them.
	underlay netip.Addr
	dev      overlay.Device

	mu    sync.Mutex
	store *cluster.Store // nil until etcd answered once
	// ready is closed once the node store was compared with the cluster's
	// first complete listing; claims wait for it.
	ready chan struct{}
}

// New checks the configuration, reads the networks' conflists and the TLS
// material: everything that can be wrong before the kernel is touched.
func New(cfg Config, log *slog.Logger, version string) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nets, err := loadNetworks(cfg.Conflists)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, version: version, nets: nets, served: map[string]bool{}, st: newState(log),
		ready: make(chan struct{})}
	for _, n := range nets {
		d.served[n.conf.Name] = true
	}
	d.pol = newPolicyServer(nets, d.st, log)
	if d.dataDir = cfg.DataDir; d.dataDir == "" {
		if d.dataDir, err = shared(nets, "dataDir", func(c *conf.NetConf) string { return c.DataDir }); err != nil {
			return nil, fmt.Errorf("%w (or set %s)", err, optName("data-dir"))
		}
	}
	if d.socket = cfg.Socket; d.socket == "" {
		if d.socket, err = shared(nets, "daemonSocket", func(c *conf.NetConf) string { return c.DaemonSocket }); err != nil {
			return nil, fmt.Errorf("%w (or set %s)", err, optName("socket"))
		}
	}
	files := pki.Files{CA: cfg.EtcdCA, Cert: cfg.EtcdCert, Key: cfg.EtcdKey}
	if d.tls, err = files.ClientConfig(); err != nil {
		return nil, fmt.Errorf("etcd TLS material: %w", err)
	}
	return d, nil
}

// Run brings the node up and keeps it in step with the cluster until ctx
// ends. Then it stops without touching the dataplane: the device, the
// entries of every peer and the guard stay, so containers keep talking
// across nodes while the daemon is down or restarting.
func (d *Daemon) Run(ctx context.Context) error {
	var err error
	var dev string
	if d.underlay, dev, err = resolveUnderlay(d.cfg.UnderlayAddress, d.cfg.UnderlayDevice); err != nil {
		return err
	}
	d.dp = &dataplane{
		cfg: overlay.Config{Device: d.cfg.VXLANDevice, VNI: d.cfg.VXLANVNI, Port: d.cfg.VXLANPort,
			Underlay: d.underlay, MTU: d.cfg.VXLANMTU, NodeName: d.cfg.NodeName},
		guard: acl.VXLANGuard{Port: d.cfg.VXLANPort, PeerSet: overlay.DefaultPeerSet},
		ipt:   acl.Exec{},
		quick: acl.Exec{Timeout: 2 * time.Second},
	}
	log := d.log.With("node", d.cfg.NodeName)
	log.Info("starting", "version", d.version, "underlay", d.underlay, "underlayDevice", dev,
		"networks", names(d.nets), "etcd", d.cfg.EtcdEndpoints, "socket", d.socket)
	dv, ch, err := d.dp.ensure()
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	d.dev = dv
	// Deferred first, so it is the last line whichever way Run ends.
	defer log.Info("stopped; the overlay stays as it is")
	d.st.setMTU(dv.MTU)
	d.st.dataplane(nil)
	log.Info("overlay device ready", "device", dv.String(), "changes", ch.String())
	for _, w := range mtuAdvice(d.nets, dv.MTU) {
		log.Warn(w)
	}

	// Whichever way Run returns, the servers and loops see ctx end before
	// they are waited for.
	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() {
		cancel()
		bg.Wait()
	}()
	if d.cfg.Listen != "" {
		var srvTLS *tls.Config
		if !d.cfg.ListenIsLocal() {
			files := pki.Files{CA: d.cfg.EtcdCA, Cert: d.cfg.EtcdCert, Key: d.cfg.EtcdKey}
			if srvTLS, err = files.ServerConfig(); err != nil {
				return fmt.Errorf("TLS for %s: %w", d.cfg.Listen, err)
			}
		}
		done, err := serveHTTP(ctx, d.cfg.Listen, srvTLS, d.st.handler(d.cfg.NodeName, d.version), log)
		if err != nil {
			return err
		}
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := <-done; err != nil {
				log.Error("health and metrics server stopped", "err", err)
			}
		}()
		log.Info("serving /healthz and /metrics", "listen", d.cfg.Listen, "mtls", srvTLS != nil)
	}
	stopLocal, err := d.serveLocal(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cancel()
		stopLocal()
	}()

	store, err := d.connect(ctx)
	if err != nil {
		return nil // ctx ended while etcd was still unreachable
	}
	defer d.shutdown(store)
	if err := d.register(ctx, store); err != nil {
		return nil
	}
	for _, loop := range []func(context.Context, *cluster.Store){d.pingLoop, d.reclaimLoop} {
		bg.Add(1)
		go func() {
			defer bg.Done()
			loop(ctx, store)
		}()
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		d.pol.run(ctx, d.cfg.Resync)
	}()
	d.follow(ctx, store)
	return nil
}

// backoff retries fn until it succeeds or ctx ends, doubling the wait up
// to max. Failures go to the state, which logs the first of a series only.
func (d *Daemon) backoff(ctx context.Context, maxWait time.Duration, fn func() error) error {
	wait := 200 * time.Millisecond
	for {
		err := fn()
		d.st.etcd(err)
		if err == nil {
			return nil
		}
		d.log.Debug("etcd call failed; retrying", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// connect opens the cluster store, retrying until etcd answers.
func (d *Daemon) connect(ctx context.Context) (*cluster.Store, error) {
	var store *cluster.Store
	err := d.backoff(ctx, 5*time.Second, func() error {
		var err error
		store, err = cluster.Open(ctx, cluster.Config{
			Endpoints: endpointURLs(d.cfg.EtcdEndpoints),
			TLS:       d.tls,
			Prefix:    d.cfg.EtcdPrefix,
			NodeTTL:   d.cfg.NodeTTL,
			// The background work retries on its own and says so on
			// every attempt; the state logs each change of condition.
			Logf: func(format string, args ...any) { d.log.Debug(fmt.Sprintf(format, args...)) },
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.store = store
	d.mu.Unlock()
	return store, nil
}

// register writes this node's record (name, underlay address, VTEP MAC),
// retrying until etcd takes it; the store then keeps it alive and writes
// it again whenever the lease is lost.
func (d *Daemon) register(ctx context.Context, store *cluster.Store) error {
	n := cluster.Node{Name: d.cfg.NodeName, Underlay: d.underlay, VTEPMAC: d.dev.MAC.String()}
	err := d.backoff(ctx, 5*time.Second, func() error { return store.Register(ctx, n) })
	if err == nil {
		d.st.setRegistered(true)
	}
	return err
}

// shutdown leaves the cluster only when asked to: by default the record
// expires with its lease, so a restart within the TTL changes nothing on
// the peers.
func (d *Daemon) shutdown(store *cluster.Store) {
	if d.cfg.LeaveOnExit {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := store.Deregister(ctx); err != nil {
			d.log.Warn("leaving the cluster", "err", err)
		} else {
			d.log.Info("left the cluster: peers remove this node now")
		}
		cancel()
	}
	d.mu.Lock()
	d.store = nil
	d.mu.Unlock()
	if err := store.Close(); err != nil {
		d.log.Warn("closing the cluster store", "err", err)
	}
}

// currentStore is the store once connected, for the local socket.
func (d *Daemon) currentStore() *cluster.Store {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.store
}

// pingLoop checks etcd and this node's record every few seconds, so the
// state (and /healthz) knows when etcd went away even while nothing
// changes, and a lost registration is noticed.
func (d *Daemon) pingLoop(ctx context.Context, store *cluster.Store) {
	every := min(2*time.Second, d.cfg.NodeTTL/3)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		nodes, _, err := store.Nodes(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		d.st.etcd(err)
		if err != nil {
			continue
		}
		found := false
		for _, n := range nodes {
			found = found || n.Name == d.cfg.NodeName
		}
		d.st.setRegistered(found)
	}
}

// reclaimLoop frees, every interval, the blocks of nodes gone longer than
// the grace period. Any number of nodes may do it at once.
func (d *Daemon) reclaimLoop(ctx context.Context, store *cluster.Store) {
	t := time.NewTicker(d.cfg.ReclaimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		freed, err := store.ReclaimDead(ctx, d.cfg.ReclaimGrace, time.Now())
		for _, b := range freed {
			d.log.Info("freed a block of a dead node", "network", b.Network, "zone", b.Zone, "block", b.Prefix, "owner", b.Node, "grace", d.cfg.ReclaimGrace)
		}
		d.st.addReclaimed(len(freed))
		if err != nil && ctx.Err() == nil {
			d.log.Debug("reclaim", "err", err)
		}
	}
}
