package node

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// required are the settings without a default, as flags.
var required = []string{"--node-name", "n1", "--conflist", "/etc/cni/net.d/z.conflist",
	"--etcd-endpoints", "https://10.0.0.1:2379", "--etcd-ca", "/ca", "--etcd-cert", "/c", "--etcd-key", "/k"}

func TestParseDefaults(t *testing.T) {
	c, err := Parse(required, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.NodeTTL != 8*time.Second || c.Listen != "127.0.0.1:9476" || c.VXLANDevice != "zn-vxlan" ||
		c.VXLANPort != 4789 || c.VXLANVNI != 1 || c.Resync != 30*time.Second || c.LogLevel != slog.LevelInfo ||
		c.LeaveOnExit || !c.ListenIsLocal() {
		t.Errorf("defaults: %+v", c)
	}
}

func TestParseFileThenFlags(t *testing.T) {
	dir := t.TempDir()
	yml := filepath.Join(dir, "zonenetd.yaml")
	doc := `nodeName: from-file
underlayAddress: 192.0.2.10
conflists: [/a.conflist, /b.conflist]
etcdEndpoints:
  - https://192.0.2.1:2379
  - 192.0.2.2:2379
etcdCA: /pki/ca.crt
etcdCert: /pki/n.crt
etcdKey: /pki/n.key
nodeTTL: 6s
vxlanVNI: 42
vxlanPort: 8472
logLevel: debug
leaveOnExit: true
`
	if err := os.WriteFile(yml, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]string{"--config", yml, "--node-name", "from-flag", "--etcd-endpoints", "https://198.51.100.1:2379",
		"--leave-on-exit=false", "--vxlan-port", "4790"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "from-flag" || c.UnderlayAddress != netip.MustParseAddr("192.0.2.10") ||
		!slices.Equal(c.Conflists, []string{"/a.conflist", "/b.conflist"}) ||
		!slices.Equal(c.EtcdEndpoints, []string{"https://198.51.100.1:2379"}) ||
		c.NodeTTL != 6*time.Second || c.VXLANVNI != 42 || c.VXLANPort != 4790 || c.LogLevel != slog.LevelDebug || c.LeaveOnExit {
		t.Errorf("file then flags: %+v", c)
	}
	// The same file as JSON.
	js := filepath.Join(dir, "zonenetd.json")
	if err := os.WriteFile(js, []byte(`{"nodeName":"j","conflists":"/x.conflist,/y.conflist","vxlanVNI":7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Parse([]string{"--config", js}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "j" || len(c.Conflists) != 2 || c.VXLANVNI != 7 {
		t.Errorf("json: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(doc string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", n))
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown key", []string{"--config", write("nodename: x\n")}, `unknown key "nodename"`},
		{"list for a scalar", []string{"--config", write("nodeName: [a, b]\n")}, "nodeName: a single value"},
		{"bad duration in file", []string{"--config", write("nodeTTL: 10\n")}, `nodeTTL "10"`},
		{"bad flag value", []string{"--vxlan-port", "70000"}, "--vxlan-port"},
		{"vni over 24 bits", []string{"--vxlan-vni", "16777216"}, "--vxlan-vni"},
		{"unknown flag", []string{"--nope"}, "nope"},
		{"argument", []string{"extra"}, `unexpected argument "extra"`},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.args, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want an error with %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name  string
		extra []string
		want  string
	}{
		{"plain http", []string{"--etcd-endpoints", "http://10.0.0.1:2379"}, "--etcd-endpoints (config etcdEndpoints)"},
		{"no port", []string{"--etcd-endpoints", "10.0.0.1"}, "no port"},
		{"ttl", []string{"--node-ttl", "1s"}, "--node-ttl (config nodeTTL): 1s"},
		{"grace under ttl", []string{"--reclaim-grace", "5s"}, "--reclaim-grace"},
		{"vni", []string{"--vxlan-vni", "0"}, "--vxlan-vni"},
		{"mtu", []string{"--vxlan-mtu", "500"}, "--vxlan-mtu"},
		{"device", []string{"--vxlan-device", "a-very-long-device"}, "--vxlan-device"},
		{"underlay v6", []string{"--underlay-address", "2001:db8::1"}, "--underlay-address"},
		{"listen", []string{"--listen", "localhost:9476"}, "--listen"},
		{"name", []string{"--node-name", "a/b"}, "--node-name"},
		{"socket", []string{"--socket", "run/z.sock"}, "--socket"},
		{"log format", []string{"--log-format", "xml"}, "--log-format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(append(slices.Clone(required), tc.extra...), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error with %q", err, tc.want)
			}
		})
	}
	c := Defaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--conflist (config conflists): required") {
		t.Errorf("empty config: %v", err)
	}
	if c.NodeName == "" {
		t.Error("the node name was not taken from the hostname")
	}
}

// TestHelp: every option appears in --help with its flag and config key.
func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if _, err := Parse([]string{"--help"}, &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, o := range options {
		if !strings.Contains(out.String(), "--"+o.flag) || !strings.Contains(out.String(), "config: "+o.key) {
			t.Errorf("--help lacks --%s / %s", o.flag, o.key)
		}
	}
	if !strings.Contains(out.String(), "--config FILE") {
		t.Error("--help lacks --config")
	}
}
