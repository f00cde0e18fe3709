package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// option is one setting. One table drives the config file, the flags and
// --help, so none of them can forget a setting the others know.
type option struct {
	flag    string // command-line flag, without the dashes
	key     string // key in the config file
	arg     string // placeholder of the value in --help
	help    string
	list    bool // several values: a list in the file, a repeated or comma-separated flag
	boolean bool // a flag without a value (--x, or --x=false)
	set     func(c *Config, v string) error
	get     func(c *Config) string // the default, for --help
}

func durationOpt(flag, key, help string, field func(*Config) *time.Duration) option {
	return option{flag: flag, key: key, arg: "DURATION", help: help,
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return err
			}
			*field(c) = d
			return nil
		},
		get: func(c *Config) string { return field(c).String() }}
}

func stringOpt(flag, key, arg, help string, field func(*Config) *string) option {
	return option{flag: flag, key: key, arg: arg, help: help,
		set: func(c *Config, v string) error { *field(c) = v; return nil },
		get: func(c *Config) string { return *field(c) }}
}

func listOpt(flag, key, arg, help string, field func(*Config) *[]string) option {
	return option{flag: flag, key: key, arg: arg, help: help, list: true,
		set: func(c *Config, v string) error {
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					*field(c) = append(*field(c), s)
				}
			}
			return nil
		},
		get: func(c *Config) string { return strings.Join(*field(c), ",") }}
}

func uintOpt(flag, key, help string, bits int, set func(*Config, uint64), get func(*Config) uint64) option {
	return option{flag: flag, key: key, arg: "N", help: help,
		set: func(c *Config, v string) error {
			n, err := strconv.ParseUint(v, 10, bits)
			if err != nil {
				return fmt.Errorf("not a number of %d bits", bits)
			}
			set(c, n)
			return nil
		},
		get: func(c *Config) string { return strconv.FormatUint(get(c), 10) }}
}

var options = []option{
	stringOpt("node-name", "nodeName", "NAME", "this node's name in the cluster (default: the hostname)",
		func(c *Config) *string { return &c.NodeName }),
	{flag: "underlay-address", key: "underlayAddress", arg: "IPv4",
		help: "this node's address on the network between the nodes, where peers send VXLAN packets (default: the first global IPv4 address of --underlay-device, or of the default route's device)",
		set: func(c *Config, v string) error {
			a, err := netip.ParseAddr(v)
			c.UnderlayAddress = a
			return err
		},
		get: func(c *Config) string {
			if c.UnderlayAddress.IsValid() {
				return c.UnderlayAddress.String()
			}
			return ""
		}},
	stringOpt("underlay-device", "underlayDevice", "NAME", "the link holding the underlay address (optional)",
		func(c *Config) *string { return &c.UnderlayDevice }),
	stringOpt("data-dir", "dataDir", "DIR", "the plugin's data directory, where claimed blocks are recorded (default: the networks' dataDir)",
		func(c *Config) *string { return &c.DataDir }),
	listOpt("conflist", "conflists", "FILE", "CNI configuration (conflist or single plugin) of a network this node serves, with \"store\": \"etcd\"; repeat for several networks (required)",
		func(c *Config) *[]string { return &c.Conflists }),
	listOpt("etcd-endpoints", "etcdEndpoints", "URL", "etcd client URLs, https://HOST:PORT, comma-separated or repeated (required)",
		func(c *Config) *[]string { return &c.EtcdEndpoints }),
	stringOpt("etcd-ca", "etcdCA", "FILE", "CA certificate that signed etcd's certificate (required)",
		func(c *Config) *string { return &c.EtcdCA }),
	stringOpt("etcd-cert", "etcdCert", "FILE", "this node's client certificate (zonenetctl certs node) (required)",
		func(c *Config) *string { return &c.EtcdCert }),
	stringOpt("etcd-key", "etcdKey", "FILE", "the key of --etcd-cert (required)",
		func(c *Config) *string { return &c.EtcdKey }),
	stringOpt("etcd-prefix", "etcdPrefix", "PREFIX", "key prefix of the cluster in etcd",
		func(c *Config) *string { return &c.EtcdPrefix }),
	durationOpt("node-ttl", "nodeTTL", "lease of this node's registration: peers drop a node that stopped renewing it within this time",
		func(c *Config) *time.Duration { return &c.NodeTTL }),
	durationOpt("reclaim-grace", "reclaimGrace", "how long a node must be gone before its address blocks are freed for others",
		func(c *Config) *time.Duration { return &c.ReclaimGrace }),
	durationOpt("reclaim-interval", "reclaimInterval", "how often to look for blocks of dead nodes",
		func(c *Config) *time.Duration { return &c.ReclaimInterval }),
	durationOpt("resync", "resync", "how often to compare the kernel with the cluster even without a change (repairs drift)",
		func(c *Config) *time.Duration { return &c.Resync }),
	stringOpt("vxlan-device", "vxlanDevice", "NAME", "name of the VXLAN device",
		func(c *Config) *string { return &c.VXLANDevice }),
	uintOpt("vxlan-vni", "vxlanVNI", "VXLAN network identifier, the same on every node", 24,
		func(c *Config, n uint64) { c.VXLANVNI = uint32(n) }, func(c *Config) uint64 { return uint64(c.VXLANVNI) }),
	uintOpt("vxlan-port", "vxlanPort", "UDP port of VXLAN, the same on every node; open to known peers only", 16,
		func(c *Config, n uint64) { c.VXLANPort = uint16(n) }, func(c *Config) uint64 { return uint64(c.VXLANPort) }),
	uintOpt("vxlan-mtu", "vxlanMTU", "MTU of the VXLAN device; 0: the underlay link's MTU minus 50", 16,
		func(c *Config, n uint64) { c.VXLANMTU = int(n) }, func(c *Config) uint64 { return uint64(c.VXLANMTU) }),
	stringOpt("socket", "socket", "PATH", "unix socket the plugin asks for blocks on (default: the networks' daemonSocket)",
		func(c *Config) *string { return &c.Socket }),
	stringOpt("listen", "listen", "IP:PORT", "address of /healthz and /metrics; empty disables them; a non-loopback address is served with mutual TLS 1.3 (etcd CA and certificate)",
		func(c *Config) *string { return &c.Listen }),
	{flag: "log-level", key: "logLevel", arg: "LEVEL", help: "debug, info, warn or error",
		set: func(c *Config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) },
		get: func(c *Config) string { return strings.ToLower(c.LogLevel.String()) }},
	stringOpt("log-format", "logFormat", "FORMAT", "text or json (logs go to stderr)",
		func(c *Config) *string { return &c.LogFormat }),
	{flag: "leave-on-exit", key: "leaveOnExit", boolean: true,
		help: "on SIGTERM, remove this node from the cluster at once; by default the registration expires after --node-ttl, so a restart within it is invisible to the peers",
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			c.LeaveOnExit = b
			return err
		},
		get: func(c *Config) string { return strconv.FormatBool(c.LeaveOnExit) }},
}

// optName names an option in messages: its flag and its config key.
func optName(flag string) string {
	for _, o := range options {
		if o.flag == flag {
			return fmt.Sprintf("--%s (config %s)", o.flag, o.key)
		}
	}
	return "--" + flag
}

// ErrHelp is returned by Parse after it printed the help.
var ErrHelp = errors.New("help requested")

const usageHead = `Usage: zonenetd [--config FILE] [flags]

zonenetd runs on every node of a zonenet cluster. It registers the node in
etcd under a lease it keeps alive, programs the VXLAN overlay to the other
live nodes and their address blocks (and removes a node whose lease
expired), frees the blocks of nodes gone longer than the grace period,
claims blocks for the plugin on its local socket, and serves /healthz and
/metrics. SIGTERM or SIGINT stops it without touching the dataplane.

Settings come from the defaults, then the config file (YAML or JSON, keys
as below), then the flags.

  --config FILE
        config file (YAML or JSON)
`

// Parse reads the flags, and the config file --config names, over the
// defaults. --help prints the usage to out and returns ErrHelp. The result
// is not validated yet.
func Parse(args []string, out io.Writer) (Config, error) {
	fs := flag.NewFlagSet("zonenetd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var file string
	fs.StringVar(&file, "config", "", "")
	type setting struct {
		o *option
		v string
	}
	var given []setting
	for i := range options {
		o := &options[i]
		record := func(v string) error {
			given = append(given, setting{o, v})
			return nil
		}
		if o.boolean {
			fs.BoolFunc(o.flag, o.help, record)
		} else {
			fs.Func(o.flag, o.help, record)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(out, Usage())
			return Config{}, ErrHelp
		}
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c := Defaults()
	if file != "" {
		if err := c.readFile(file); err != nil {
			return Config{}, err
		}
	}
	// A list flag replaces the file's list rather than adding to it.
	reset := map[string]bool{}
	for _, g := range given {
		if g.o.list && !reset[g.o.flag] {
			reset[g.o.flag] = true
			clearList(&c, g.o)
		}
		if err := g.o.set(&c, g.v); err != nil {
			return Config{}, fmt.Errorf("--%s %q: %v", g.o.flag, g.v, err)
		}
	}
	return c, nil
}

func clearList(c *Config, o *option) {
	switch o.flag {
	case "conflist":
		c.Conflists = nil
	case "etcd-endpoints":
		c.EtcdEndpoints = nil
	}
}

// Usage is the text of --help: every flag, its config key and default.
func Usage() string {
	var b strings.Builder
	b.WriteString(usageHead)
	def := Defaults()
	for _, o := range options {
		fmt.Fprintf(&b, "  --%s\n        %s\n        config: %s", strings.TrimSpace(o.flag+" "+o.arg), o.help, o.key)
		if o.list {
			b.WriteString(" (a list)")
		}
		if d := o.get(&def); d != "" {
			fmt.Fprintf(&b, "; default: %s", d)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// readFile applies a YAML or JSON config file. Unknown keys are errors:
// a misspelt key silently ignored is a setting silently not applied.
func (c *Config) readFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("config file %s: want a mapping of settings: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // errors in a stable order
	for _, k := range keys {
		i := slices.IndexFunc(options, func(o option) bool { return o.key == k })
		if i < 0 {
			return fmt.Errorf("config file %s: unknown key %q (see zonenetd --help)", path, k)
		}
		o := &options[i]
		vals, err := fileValues(m[k], o.list)
		if err != nil {
			return fmt.Errorf("config file %s: %s: %v", path, k, err)
		}
		if o.list {
			clearList(c, o)
		}
		for _, v := range vals {
			if err := o.set(c, v); err != nil {
				return fmt.Errorf("config file %s: %s %q: %v", path, k, v, err)
			}
		}
	}
	return nil
}

// fileValues turns a value of the file into the strings a flag would
// carry: scalars as written, lists (for list settings) element by element.
func fileValues(raw json.RawMessage, list bool) ([]string, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	scalar := func(v any) (string, error) {
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return x.String(), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
		return "", fmt.Errorf("want a string, number or boolean, not %T", v)
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		if !list {
			return nil, errors.New("a single value, not a list")
		}
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, err := scalar(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := scalar(v)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

// NewLogger makes the daemon's logger on w.
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	o := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}
