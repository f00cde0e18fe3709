package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Defaults of Config.
const (
	DefaultNodeTTL        = 10 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// Config says how to reach the cluster's etcd.
type Config struct {
	Endpoints []string // e.g. https://10.0.0.1:2379
	// TLS must carry a client certificate: etcd is reached with mutual
	// TLS only. Its MinVersion is raised to TLS 1.3.
	TLS *tls.Config
	// Prefix of every key (DefaultPrefix if empty); several clusters may
	// share one etcd under different prefixes.
	Prefix string
	// NodeTTL is the lease of a node's registration: how long the node's
	// record outlives the node (DefaultNodeTTL if zero). etcd rounds it up
	// to whole seconds and to its own minimum (2 s with default timing).
	NodeTTL time.Duration
	// DialTimeout bounds the first contact in Open.
	DialTimeout time.Duration
	// RequestTimeout bounds every call of the Store (its work in etcd;
	// the caller's context may end it earlier).
	RequestTimeout time.Duration
	// Logf receives what the background work (keep-alive, re-registration,
	// watches) cannot return as an error. Nil discards it.
	Logf func(format string, args ...any)
}

// Store is the cluster state in etcd. Its methods may be called from
// several goroutines.
type Store struct {
	cli  *clientv3.Client
	cfg  Config
	keys keys
	// ctx ends the background goroutines at Close.
	ctx    context.Context
	cancel context.CancelFunc
	bgMu   sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup

	regMu sync.Mutex // serialises Register and Deregister
	reg   *registration
	// claim lets one ClaimBlock of this Store run at a time: claims of one
	// node never race each other for the same free block, only claims of
	// different nodes do.
	claim chan struct{}
}

// Open connects to etcd and checks within cfg.DialTimeout that it answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("open cluster store: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		DialTimeout: cfg.DialTimeout,
		// Pings find a dead connection to a silent peer (a host that
		// vanished without a reset) in seconds rather than minutes.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// gRPC's default reconnect backoff grows to two minutes: after a
		// long etcd outage a node would stay cut off that long after etcd
		// is back. Retry at least every two seconds instead; it costs a
		// refused connection.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: cfg.DialTimeout,
		})},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("open cluster store at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	s := &Store{cli: cli, cfg: cfg, keys: keys{prefix: cfg.Prefix}, claim: make(chan struct{}, 1)}
	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, s.keys.nodes(), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if why := diagnose(ctx, cfg.Endpoints, cfg.TLS); why != nil {
			err = fmt.Errorf("%w; %w", err, why)
		}
		return nil, s.wrap(cctx, "open cluster store", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Endpoints) == 0 {
		return cfg, errors.New("no etcd endpoint")
	}
	if cfg.TLS == nil {
		return cfg, errors.New("no TLS configuration: etcd is reached with mutual TLS only")
	}
	if len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetClientCertificate == nil {
		return cfg, errors.New("TLS configuration has no client certificate")
	}
	cfg.TLS = cfg.TLS.Clone()
	if cfg.TLS.MinVersion < tls.VersionTLS13 {
		cfg.TLS.MinVersion = tls.VersionTLS13
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(cfg.Prefix, "/") {
		return cfg, fmt.Errorf("key prefix %q must start with '/'", cfg.Prefix)
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.NodeTTL, DefaultNodeTTL}, {&cfg.DialTimeout, DefaultDialTimeout}, {&cfg.RequestTimeout, DefaultRequestTimeout}} {
		if *d.v < 0 {
			return cfg, fmt.Errorf("negative duration %s", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return cfg, nil
}

// Close stops the background work and the connection. A registered node
// is not deregistered: its record expires with its lease, as if the node
// had died (Deregister first for a clean leave).
// Closing twice is harmless.
func (s *Store) Close() error {
	if s == nil || s.cli == nil {
		return nil
	}
	s.bgMu.Lock()
	already := s.closed
	s.closed = true
	s.bgMu.Unlock()
	if already {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close cluster store: %w", err)
	}
	return nil
}

// spawn runs fn in the background until Close, or returns false if the
// Store is closed already.
func (s *Store) spawn(fn func()) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// errClosed is returned by calls that need background work after Close.
var errClosed = errors.New("cluster store is closed")

// Prefix is the key prefix of the store.
func (s *Store) Prefix() string { return s.cfg.Prefix }

// op bounds one call's work in etcd by the request timeout.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// wrap names the operation and, when the call ran out of time, says how
// long etcd was waited for; errors.Is(err, context.DeadlineExceeded) holds
// then, whatever form the client gave the error.
func (s *Store) wrap(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s: etcd %s: %w (%v)", what, strings.Join(s.cfg.Endpoints, ","), cerr, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: etcd %s did not answer in time: %w", what, strings.Join(s.cfg.Endpoints, ","), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (s *Store) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// sleep waits d or until ctx ends, and says whether to go on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
