package policycheck

import (
	"strings"
	"testing"
)

func TestZonesFromConfList(t *testing.T) {
	cases := []struct {
		name, doc string
		zones     int
		err       string
	}{
		{"conflist", `{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"bridge"},{"type":"zonenet","zones":[{"name":"a","subnet":"10.1.0.0/24"}]}]}`, 1, ""},
		{"single plugin", `{"cniVersion":"1.1.0","name":"n","type":"zonenet","zones":[{"name":"a","subnet":"10.1.0.0/24"},{"name":"b","subnet":"10.2.0.0/24"}]}`, 2, ""},
		{"no zones", `{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"zonenet","mode":"none"}]}`, 0, ""},
		{"no zonenet", `{"name":"n","plugins":[{"type":"bridge"}]}`, 0, `no plugin of type "zonenet"`},
		{"invalid zonenet", `{"name":"n","plugins":[{"type":"zonenet","zones":[{"name":"a","subnet":"10.1.0.1/24"}]}]}`, 0, "host bits"},
		{"not JSON", `zones: []`, 0, "not a CNI configuration"},
	}
	for _, c := range cases {
		z, err := ZonesFromConfList([]byte(c.doc))
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.err)
		case c.err == "" && (err != nil || z == nil || len(z) != c.zones):
			t.Errorf("%s: %d zones (nil %v), %v; want %d", c.name, len(z), z == nil, err, c.zones)
		}
	}
}

func TestFormatBandwidth(t *testing.T) {
	for bps, want := range map[uint64]string{100_000_000: "100Mbit", 1_500_000_000: "1500Mbit", 1e9: "1Gbit", 1234: "1234bit", 8000: "8kbit"} {
		if got := FormatBandwidth(bps); got != want {
			t.Errorf("FormatBandwidth(%d) = %q, want %q", bps, got, want)
		}
	}
}
