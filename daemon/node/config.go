// Package node is zonenetd, the daemon that runs on every node of a zonenet
// cluster: it keeps the node registered in etcd, programs the VXLAN overlay
// towards the other live nodes and their address blocks, frees the blocks
// of nodes that stayed dead past a grace period, claims blocks for the
// plugin over a local socket, installs the policy pushed to etcd for each
// of its networks, and serves health and metrics on localhost.
//
// It lives apart from package daemon, which the plugin uses to reach it:
// the etcd client and its gRPC stack must not be linked into (and
// initialised by) every CNI exec.
package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/zonenet/zonenet/overlay"
)

// Defaults of Config.
const (
	DefaultListen = "127.0.0.1:9476"
	// DefaultNodeTTL: peers drop a dead node within the TTL plus etcd's
	// half-second expiry tick, which must stay within 10 s.
	DefaultNodeTTL         = 8 * time.Second
	DefaultReclaimGrace    = 10 * time.Minute
	DefaultReclaimInterval = time.Minute
	DefaultResync          = 30 * time.Second
	DefaultEtcdPrefix      = "/zonenet/"
)

// Config is zonenetd's configuration: defaults, then the config file, then
// the flags. Parse builds it; Validate checks what it can without the
// kernel or the network.
type Config struct {
	NodeName string
	// UnderlayAddress is this node's address on the network between the
	// nodes; when invalid it is the first global IPv4 address of
	// UnderlayDevice, or of the device of the default route.
	UnderlayAddress netip.Addr
	UnderlayDevice  string
	// DataDir holds the plugin's store, where claimed blocks are
	// recorded; empty means the networks' dataDir.
	DataDir   string
	Conflists []string

	EtcdEndpoints []string
	EtcdCA        string
	EtcdCert      string
	EtcdKey       string
	EtcdPrefix    string

	NodeTTL         time.Duration
	ReclaimGrace    time.Duration
	ReclaimInterval time.Duration
	Resync          time.Duration

	VXLANDevice string
	VXLANVNI    uint32
	VXLANPort   uint16
	VXLANMTU    int // 0: the underlay link's MTU minus overlay.Overhead

	// Socket is the local endpoint of the plugin; empty means the
	// networks' daemonSocket.
	Socket string
	// Listen is the address of /healthz and /metrics; empty disables them.
	// An address other than loopback is served with mutual TLS 1.3 using
	// the etcd certificate and CA.
	Listen      string
	LogLevel    slog.Level
	LogFormat   string // text or json
	LeaveOnExit bool
}

// Defaults is the configuration before the file and the flags.
func Defaults() Config {
	return Config{
		EtcdPrefix:      DefaultEtcdPrefix,
		NodeTTL:         DefaultNodeTTL,
		ReclaimGrace:    DefaultReclaimGrace,
		ReclaimInterval: DefaultReclaimInterval,
		Resync:          DefaultResync,
		VXLANDevice:     overlay.DefaultDevice,
		VXLANVNI:        overlay.DefaultVNI,
		VXLANPort:       overlay.DefaultPort,
		Listen:          DefaultListen,
		LogLevel:        slog.LevelInfo,
		LogFormat:       "text",
	}
}

// nodeName is what the cluster accepts as a key segment (see package
// cluster), and what an interface-free hostname looks like.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,253}$`)

// Validate checks the configuration and fills the node name from the
// hostname when it is empty. Errors name the flag and the config key.
func (c *Config) Validate() error {
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("%s: not set and the hostname is unknown: %w", optName("node-name"), err)
		}
		c.NodeName = h
	}
	var errs []error
	bad := func(flag, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", optName(flag), fmt.Sprintf(format, a...)))
	}
	if !nodeName.MatchString(c.NodeName) || c.NodeName == "." || c.NodeName == ".." {
		bad("node-name", "%q: use 1-253 letters, digits, '.', '-' or '_'", c.NodeName)
	}
	if a := c.UnderlayAddress; a.IsValid() && (!a.Is4() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback()) {
		bad("underlay-address", "%s: want a unicast IPv4 address", a)
	}
	if len(c.UnderlayDevice) > 15 {
		bad("underlay-device", "%q: longer than 15 bytes", c.UnderlayDevice)
	}
	if len(c.Conflists) == 0 {
		bad("conflist", "required: the CNI configuration(s) of the network(s) this node serves")
	}
	if len(c.EtcdEndpoints) == 0 {
		bad("etcd-endpoints", "required")
	}
	for _, ep := range c.EtcdEndpoints {
		if err := checkEndpoint(ep); err != nil {
			bad("etcd-endpoints", "%q: %v", ep, err)
		}
	}
	for _, f := range []struct{ flag, v string }{{"etcd-ca", c.EtcdCA}, {"etcd-cert", c.EtcdCert}, {"etcd-key", c.EtcdKey}} {
		if f.v == "" {
			bad(f.flag, "required: etcd is reached with mutual TLS only")
		}
	}
	if !strings.HasPrefix(c.EtcdPrefix, "/") {
		bad("etcd-prefix", "%q: must start with '/'", c.EtcdPrefix)
	}
	if c.NodeTTL < 2*time.Second {
		bad("node-ttl", "%s: at least 2s (etcd's minimum lease)", c.NodeTTL)
	}
	if c.ReclaimGrace < c.NodeTTL {
		bad("reclaim-grace", "%s: shorter than the node TTL %s would free blocks of nodes that only restart", c.ReclaimGrace, c.NodeTTL)
	}
	if c.ReclaimInterval < time.Second {
		bad("reclaim-interval", "%s: at least 1s", c.ReclaimInterval)
	}
	if c.Resync < time.Second {
		bad("resync", "%s: at least 1s", c.Resync)
	}
	if c.VXLANDevice == "" || len(c.VXLANDevice) > 15 {
		bad("vxlan-device", "%q: want 1-15 bytes", c.VXLANDevice)
	}
	if c.VXLANVNI == 0 || c.VXLANVNI >= 1<<24 {
		bad("vxlan-vni", "%d: want 1 to %d", c.VXLANVNI, 1<<24-1)
	}
	if c.VXLANPort == 0 {
		bad("vxlan-port", "0: want 1 to 65535")
	}
	if c.VXLANMTU != 0 && (c.VXLANMTU < 576 || c.VXLANMTU > 65535) {
		bad("vxlan-mtu", "%d: want 576 to 65535, or 0 for the underlay's MTU minus %d", c.VXLANMTU, overlay.Overhead)
	}
	if c.Socket != "" && !strings.HasPrefix(c.Socket, "/") {
		bad("socket", "%q: must be an absolute path", c.Socket)
	}
	if c.DataDir != "" && !strings.HasPrefix(c.DataDir, "/") {
		bad("data-dir", "%q: must be an absolute path", c.DataDir)
	}
	if c.Listen != "" {
		if _, err := netip.ParseAddrPort(c.Listen); err != nil {
			bad("listen", "%q: want IP:PORT (or empty to disable): %v", c.Listen, err)
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log-format", "%q: want text or json", c.LogFormat)
	}
	return errors.Join(errs...)
}

// checkEndpoint accepts https://host:port and host:port: etcd is reached
// over TLS only, so a plain http URL is a mistake worth stopping at.
func checkEndpoint(ep string) error {
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return err
	}
	if u.Scheme != "https" {
		return fmt.Errorf("scheme %s: etcd is reached with TLS only, use https://", u.Scheme)
	}
	if u.Port() == "" {
		return errors.New("no port")
	}
	return nil
}

// endpointURLs gives every endpoint its https:// scheme.
func endpointURLs(eps []string) []string {
	out := make([]string, len(eps))
	for i, ep := range eps {
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep
		}
		out[i] = ep
	}
	return out
}

// ListenIsLocal reports whether the health and metrics address is a
// loopback one, which is served without TLS.
func (c *Config) ListenIsLocal() bool {
	ap, err := netip.ParseAddrPort(c.Listen)
	return err == nil && ap.Addr().IsLoopback()
}
