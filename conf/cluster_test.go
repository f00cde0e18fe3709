package conf

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestClusterDefaults(t *testing.T) {
	c, err := Parse([]byte(reference))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != StoreLocal || c.Cluster() || c.DaemonSocket != "" || c.BlockSize != 0 {
		t.Errorf("local defaults: store %q socket %q blockSize %d", c.Store, c.DaemonSocket, c.BlockSize)
	}
	c, err = Parse([]byte(strings.Replace(reference, `"mode": "bridge"`, `"mode": "bridge", "store": "etcd"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cluster() || c.DaemonSocket != DefaultDaemonSocket || c.BlockSize != 26 || c.BlockSize6 != 122 {
		t.Errorf("etcd defaults: store %q socket %q blockSize %d/%d", c.Store, c.DaemonSocket, c.BlockSize, c.BlockSize6)
	}
	if c.BlockBits(c.Zone("mgmt").Subnet) != 26 || c.BlockBits(c.Zone("mgmt").Subnet6) != 122 {
		t.Errorf("BlockBits per family: %d %d", c.BlockBits(c.Zone("mgmt").Subnet), c.BlockBits(c.Zone("mgmt").Subnet6))
	}
	c, err = Parse([]byte(`{"name":"n","store":"etcd","daemonSocket":"/run/x/../zd.sock","blockSize":28,"blockSize6":120,
		"zones":[{"name":"a","subnet":"10.0.1.0/24","subnet6":"fd00::/64"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.DaemonSocket != "/run/zd.sock" || c.BlockSize != 28 || c.BlockSize6 != 120 {
		t.Errorf("explicit: socket %q blockSize %d/%d", c.DaemonSocket, c.BlockSize, c.BlockSize6)
	}
	// The cluster keys are ignored in local mode: switching stores is one key.
	if _, err := Parse([]byte(`{"name":"n","store":"local","blockSize":24,"daemonSocket":"rel",
		"zones":[{"name":"a","subnet":"10.0.1.0/24"}]}`)); err != nil {
		t.Errorf("local mode with leftover cluster keys: %v", err)
	}
	// Modes without addresses need no zone to compare blocks with.
	if _, err := Parse([]byte(`{"name":"n","mode":"none","store":"etcd"}`)); err != nil {
		t.Errorf("none mode in cluster: %v", err)
	}
}

func TestClusterErrors(t *testing.T) {
	etcd := func(extra, zones string) string {
		return `{"name":"n","store":"etcd"` + extra + `,"zones":[` + zones + `]}`
	}
	z24 := `{"name":"fe","subnet":"10.0.1.0/24"}`
	cases := []struct {
		name, conf string
		code       uint
		want       []string
	}{
		{"unknown store", `{"name":"n","store":"consul","mode":"none"}`, types.ErrInvalidNetworkConfig, []string{"store", "consul", "local (one host) or etcd"}},
		{"store not a string", `{"name":"n","store":1,"mode":"none"}`, types.ErrDecodingFailure, []string{"store"}},
		{"delegated ipam", etcd(`,"ipam":{"type":"host-local"}`, z24), types.ErrInvalidNetworkConfig, []string{"ipam.type", "host-local", "store etcd"}},
		{"relative socket", etcd(`,"daemonSocket":"zonenetd.sock"`, z24), types.ErrInvalidNetworkConfig, []string{"daemonSocket", "zonenetd.sock", "absolute"}},
		{"long socket", etcd(`,"daemonSocket":"/`+strings.Repeat("s", 120)+`"`, z24), types.ErrInvalidNetworkConfig, []string{"daemonSocket", "107 bytes"}},
		{"block not longer", etcd(`,"blockSize":24`, z24), types.ErrInvalidNetworkConfig, []string{`blockSize "24"`, "zones[0] (fe).subnet 10.0.1.0/24"}},
		{"block shorter", etcd(`,"blockSize":16`, z24), types.ErrInvalidNetworkConfig, []string{`blockSize "16"`, "not longer"}},
		{"default block too big", etcd(``, `{"name":"fe","subnet":"10.0.1.0/27"}`), types.ErrInvalidNetworkConfig, []string{`blockSize "26"`, "10.0.1.0/27", "26 is its default"}},
		{"block too small", etcd(`,"blockSize":31`, z24), types.ErrInvalidNetworkConfig, []string{`blockSize "31"`, "at least 4 addresses", "1 to 30"}},
		{"block zero", etcd(`,"blockSize":0`, z24), types.ErrInvalidNetworkConfig, []string{`blockSize "0"`}},
		{"block not a number", etcd(`,"blockSize":"26"`, z24), types.ErrDecodingFailure, []string{"blockSize"}},
		{"block6 too small", etcd(`,"blockSize6":127`, `{"name":"m","subnet6":"fd00::/64"}`), types.ErrInvalidNetworkConfig, []string{`blockSize6 "127"`, "1 to 126"}},
		{"block6 not longer", etcd(`,"blockSize6":64`, `{"name":"m","subnet6":"fd00::/64"}`), types.ErrInvalidNetworkConfig, []string{`blockSize6 "64"`, "zones[0] (m).subnet6 fd00::/64"}},
		{"second zone", etcd(`,"blockSize":25`, z24+`,{"name":"be","subnet":"10.0.2.0/25"}`), types.ErrInvalidNetworkConfig, []string{"zones[1] (be).subnet 10.0.2.0/25"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.conf))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse = %v, want *Error", err)
			}
			if ce.Code != tc.code {
				t.Errorf("code %d, want %d (%v)", ce.Code, tc.code, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}
