package demo

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestReferenceIsValid(t *testing.T) {
	topo := Reference()
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	perZone := map[string]int{}
	for _, c := range topo.Containers {
		perZone[c.Zone]++
	}
	for _, z := range []string{"frontend", "backend", "mgmt"} {
		if perZone[z] < 2 {
			t.Errorf("zone %s has %d containers, want at least 2", z, perZone[z])
		}
	}
}

func TestValidateRejects(t *testing.T) {
	tests := map[string]func(*Topology){
		"no network":       func(t *Topology) { t.Network = "" },
		"no zones":         func(t *Topology) { t.Zones = nil },
		"duplicate zone":   func(t *Topology) { t.Zones = append(t.Zones, t.Zones[0]) },
		"bad default":      func(t *Topology) { t.DefaultZone = "nope" },
		"unknown zone":     func(t *Topology) { t.Containers[0].Zone = "nope" },
		"duplicate name":   func(t *Topology) { t.Containers[1].Name = t.Containers[0].Name },
		"bad name":         func(t *Topology) { t.Containers[0].Name = "Web/1" },
		"gateway name":     func(t *Topology) { t.Containers[0].Name = GatewayName },
		"zone sans subnet": func(t *Topology) { t.Zones[0].Subnet = netip.Prefix{} },
		"static ip out":    func(t *Topology) { t.Containers[0].IP = netip.MustParseAddr("10.0.2.9") },
		"subnet6 not v6":   func(t *Topology) { t.Zones[2].Subnet6 = netip.MustParsePrefix("10.9.0.0/16") },
	}
	for name, mutate := range tests {
		topo := Reference()
		topo.Containers = append([]ContainerSpec(nil), topo.Containers...)
		topo.Zones = append([]ZoneSpec(nil), topo.Zones...)
		mutate(&topo)
		if err := topo.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

func TestNetConf(t *testing.T) {
	b, err := Reference().NetConf("/tmp/zn-data", "/tmp/zn-data/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CNIVersion, Name, Type, Mode, DataDir, DefaultZone, Policy string
		MTU                                                        int
		IPMasq                                                     bool
		Zones                                                      []struct{ Name, Subnet, Subnet6, Bridge string }
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.CNIVersion != CNIVersion || conf.Name != "zndemo" || conf.Type != "zonenet" || conf.Mode != "bridge" ||
		conf.DataDir != "/tmp/zn-data" || conf.Policy != "/tmp/zn-data/policy.yaml" || conf.DefaultZone != "frontend" || conf.MTU != 1450 || !conf.IPMasq {
		t.Errorf("conf = %+v", conf)
	}
	if len(conf.Zones) != 3 || conf.Zones[1].Subnet != "10.0.2.0/24" || conf.Zones[0].Bridge == "" || conf.Zones[1].Bridge != "" {
		t.Errorf("zones = %+v", conf.Zones)
	}
	if conf.Zones[2].Subnet6 != "fd00:0:3::/64" || conf.Zones[0].Subnet6 != "" {
		t.Errorf("subnet6 = %+v", conf.Zones)
	}
	if nopol, _ := Reference().NetConf("/tmp/zn-data", ""); strings.Contains(string(nopol), `"policy"`) {
		t.Errorf("policy key without a policy: %s", nopol)
	}
	if strings.Contains(string(b), `"bridge":""`) {
		t.Errorf("empty bridge rendered: %s", b)
	}
}

func TestNewNamesAndIDs(t *testing.T) {
	d, err := New(Config{Plugin: "/bin/true", Prefix: "znt", RunID: "42"})
	if err != nil {
		t.Fatal(err)
	}
	if d.HostNetns() != "znt-host-42" {
		t.Errorf("host netns = %s", d.HostNetns())
	}
	ids := map[string]bool{}
	for _, c := range d.Containers {
		if !strings.HasPrefix(c.Netns, "znt-") || !strings.HasSuffix(c.Netns, "-42") {
			t.Errorf("netns name %s", c.Netns)
		}
		if len(c.ID) != 64 || ids[c.ID] {
			t.Errorf("container ID %q is not a fresh 64-digit ID", c.ID)
		}
		ids[c.ID] = true
	}
	if got := len(d.Namespaces()); got != len(d.Containers)+1 {
		t.Errorf("Namespaces() has %d names", got)
	}
	// Nothing is created by New, and Teardown of nothing is fine, twice.
	if err := d.Teardown(); err != nil {
		t.Errorf("Teardown before Setup: %v", err)
	}
	if err := d.Teardown(); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
}
