package demo

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestReferenceNodes(t *testing.T) {
	nodes := ReferenceNodes()
	if err := checkNodes(nodes, ContinentDelays); err != nil {
		t.Fatal(err)
	}
	zones := map[string]map[string]bool{}
	for _, n := range nodes {
		zones[n.Name] = map[string]bool{}
		for _, c := range n.Containers {
			zones[n.Name][c.Zone] = true
		}
	}
	for _, n := range nodes {
		for _, z := range Reference().Zones {
			if !zones[n.Name][z.Name] {
				t.Errorf("node %s has no container in zone %s", n.Name, z.Name)
			}
		}
	}
	// The static address must be on the node that attaches first: only
	// that one owns the zone's first block.
	if c := nodes[0].Containers[len(nodes[0].Containers)-1]; c.IP != netip.MustParseAddr("10.0.3.10") {
		t.Errorf("the first node's last container is %+v, want the mgmt address 10.0.3.10", c)
	}
}

func TestCheckNodesRejects(t *testing.T) {
	good := ReferenceNodes()
	for _, tc := range []struct {
		name   string
		edit   func([]NodeSpec) []NodeSpec
		delays []Delay
		want   string
	}{
		{"no nodes", func([]NodeSpec) []NodeSpec { return nil }, nil, "no nodes"},
		{"twice", func(n []NodeSpec) []NodeSpec { n[1].Name = "eu"; return n }, nil, "defined twice"},
		{"long name", func(n []NodeSpec) []NodeSpec { n[1].Name = "northamerica"; return n }, nil, "node name"},
		{"etcd's address", func(n []NodeSpec) []NodeSpec { n[1].Underlay = nthAddr(ClusterUnderlay, 1); return n }, nil, "underlay"},
		{"outside", func(n []NodeSpec) []NodeSpec { n[1].Underlay = netip.MustParseAddr("10.78.0.1"); return n }, nil, "underlay"},
		{"same address", func(n []NodeSpec) []NodeSpec { n[1].Underlay = n[0].Underlay; return n }, nil, "underlay"},
		{"container twice", func(n []NodeSpec) []NodeSpec { n[1].Containers[0].Name = "eu-web"; return n }, nil, "on two nodes"},
		{"delay to nowhere", nil, []Delay{{A: "eu", B: "mars", OneWay: time.Millisecond}}, "not between"},
		{"delay to itself", nil, []Delay{{A: "eu", B: "eu", OneWay: time.Millisecond}}, "not between"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := ReferenceNodes()
			if tc.edit != nil {
				nodes = tc.edit(nodes)
			}
			err := checkNodes(nodes, tc.delays)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("checkNodes = %v, want an error with %q", err, tc.want)
			}
		})
	}
	if err := checkNodes(good, nil); err != nil {
		t.Errorf("reference without delays: %v", err)
	}
}

func TestNewClusterNames(t *testing.T) {
	c, err := NewCluster(ClusterConfig{Plugin: "/p", Zonenetd: "/d", Ctl: "/c", RunID: "42", Policy: ReferencePolicy})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range c.Namespaces() {
		if !strings.HasPrefix(n, "zncl-") || !strings.Contains(n, "42") || seen[n] {
			t.Errorf("namespace %q: want unique zncl-…42 names", n)
		}
		seen[n] = true
	}
	if len(seen) != 1+3+10 {
		t.Errorf("%d namespaces, want the underlay, 3 nodes and 10 containers", len(seen))
	}
	if _, err := NewCluster(ClusterConfig{Plugin: "/p", Ctl: "/c"}); err == nil {
		t.Error("NewCluster without zonenetd succeeded")
	}
}

func TestMergeConf(t *testing.T) {
	base, err := Reference().NetConf("/d", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := mergeConf(base, map[string]any{"store": "etcd", "daemonSocket": "/s.sock"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if m["store"] != "etcd" || m["daemonSocket"] != "/s.sock" || m["dataDir"] != "/d" || m["name"] != "zndemo" {
		t.Errorf("merged configuration %s", got)
	}
	if same, _ := mergeConf(base, nil); string(same) != string(base) {
		t.Errorf("no extra keys changed the configuration")
	}
}

func TestSpread(t *testing.T) {
	lo, med, hi := spread([]time.Duration{5, 1, 3, 9, 7})
	if lo != 1 || med != 5 || hi != 9 {
		t.Errorf("spread = %v %v %v, want 1 5 9", lo, med, hi)
	}
}
