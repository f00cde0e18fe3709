// Package demo builds the reference zonenet topology on one machine, entirely
// inside network namespaces: one namespace plays the host, and every
// container has a namespace of its own. Containers are attached through the
// real zonenet plugin binary, exactly as a runtime would call it, and the
// package then measures which container reaches which with real TCP connects.
//
// Nothing here touches the caller's own network namespace: the plugin is
// exec'd from a thread that sits in the demo's host namespace, listeners are
// opened inside the demo namespaces, and teardown deletes the namespaces it
// made.
package demo

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// ZoneSpec is one zone of the demo network.
type ZoneSpec struct {
	Name    string
	Subnet  netip.Prefix
	Subnet6 netip.Prefix // optional IPv6 subnet (dual-stack zone)
	// Bridge is the zone's bridge in the host namespace; empty lets the
	// plugin derive one from the network and zone names.
	Bridge string
}

// ContainerSpec is one demo container.
type ContainerSpec struct {
	Name string
	Zone string
	// IP, when valid, is a static address asked for with CNI_ARGS IP=.
	IP netip.Addr
}

// Topology is what the demo builds: one bridge-mode network with its zones
// and the containers placed in them.
type Topology struct {
	Network     string
	DefaultZone string
	MTU         int
	IPMasq      bool
	Zones       []ZoneSpec
	Containers  []ContainerSpec
}

// Reference is the topology of the design guide: front-end, back-end and
// management subnets with a few containers each. The frontend bridge is
// named explicitly and the other two are left to the plugin, so both ways of
// configuring a zone get exercised.
func Reference() Topology {
	return Topology{
		Network:     "zndemo",
		DefaultZone: "frontend",
		MTU:         1450,
		IPMasq:      true,
		Zones: []ZoneSpec{
			{Name: "frontend", Subnet: netip.MustParsePrefix("10.0.1.0/24"), Bridge: "zndemo-fe"},
			{Name: "backend", Subnet: netip.MustParsePrefix("10.0.2.0/24")},
			{Name: "mgmt", Subnet: netip.MustParsePrefix("10.0.3.0/24"), Subnet6: netip.MustParsePrefix("fd00:0:3::/64")},
		},
		Containers: []ContainerSpec{
			{Name: "web-1", Zone: "frontend"},
			{Name: "web-2", Zone: "frontend"},
			{Name: "web-3", Zone: "frontend"},
			{Name: "db-1", Zone: "backend"},
			{Name: "db-2", Zone: "backend"},
			{Name: "mon-1", Zone: "mgmt"},
			// The reference policy opens backend:3306 to this address only.
			{Name: "admin-1", Zone: "mgmt", IP: netip.MustParseAddr("10.0.3.10")},
		},
	}
}

// Zone returns the zone with the given name.
func (t Topology) Zone(name string) (ZoneSpec, bool) {
	for _, z := range t.Zones {
		if z.Name == name {
			return z, true
		}
	}
	return ZoneSpec{}, false
}

// Validate checks the topology before anything is created.
func (t Topology) Validate() error {
	if t.Network == "" {
		return fmt.Errorf("topology: network name is empty")
	}
	if len(t.Zones) == 0 {
		return fmt.Errorf("topology: no zones")
	}
	zones := map[string]bool{}
	for _, z := range t.Zones {
		if z.Name == "" || !z.Subnet.IsValid() {
			return fmt.Errorf("topology: zone %q has no name or no valid subnet", z.Name)
		}
		if zones[z.Name] {
			return fmt.Errorf("topology: zone %q defined twice", z.Name)
		}
		zones[z.Name] = true
		if z.Subnet6.IsValid() && !z.Subnet6.Addr().Is6() {
			return fmt.Errorf("topology: zone %q: subnet6 %s is not IPv6", z.Name, z.Subnet6)
		}
	}
	if t.DefaultZone != "" && !zones[t.DefaultZone] {
		return fmt.Errorf("topology: default zone %q is not defined", t.DefaultZone)
	}
	names := map[string]bool{GatewayName: true}
	for _, c := range t.Containers {
		if !validName(c.Name) {
			return fmt.Errorf("topology: container name %q: use lowercase letters, digits and '-'", c.Name)
		}
		if names[c.Name] {
			return fmt.Errorf("topology: container name %q used twice", c.Name)
		}
		names[c.Name] = true
		if !zones[c.Zone] {
			return fmt.Errorf("topology: container %q is in unknown zone %q", c.Name, c.Zone)
		}
		if c.IP.IsValid() {
			if z, _ := t.Zone(c.Zone); !z.Subnet.Contains(c.IP) {
				return fmt.Errorf("topology: container %q: address %s is outside zone %s (%s)", c.Name, c.IP, z.Name, z.Subnet)
			}
		}
	}
	return nil
}

// validName keeps container names usable inside namespace names and table
// cells.
func validName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
}

// NetConf renders the plugin configuration a runtime hands to zonenet on
// stdin: one plugin object with "name" and "cniVersion" filled in.
// policy, when not empty, is the path of the policy file.
func (t Topology) NetConf(dataDir, policy string) ([]byte, error) {
	type zone struct {
		Name    string `json:"name"`
		Subnet  string `json:"subnet"`
		Subnet6 string `json:"subnet6,omitempty"`
		Bridge  string `json:"bridge,omitempty"`
	}
	conf := struct {
		CNIVersion  string `json:"cniVersion"`
		Name        string `json:"name"`
		Type        string `json:"type"`
		Mode        string `json:"mode"`
		DataDir     string `json:"dataDir"`
		MTU         int    `json:"mtu,omitempty"`
		IPMasq      bool   `json:"ipMasq"`
		DefaultZone string `json:"defaultZone,omitempty"`
		Policy      string `json:"policy,omitempty"`
		Zones       []zone `json:"zones"`
	}{
		CNIVersion:  CNIVersion,
		Name:        t.Network,
		Type:        "zonenet",
		Mode:        "bridge",
		DataDir:     dataDir,
		MTU:         t.MTU,
		IPMasq:      t.IPMasq,
		DefaultZone: t.DefaultZone,
		Policy:      policy,
	}
	for _, z := range t.Zones {
		zz := zone{Name: z.Name, Subnet: z.Subnet.Masked().String(), Bridge: z.Bridge}
		if z.Subnet6.IsValid() {
			zz.Subnet6 = z.Subnet6.Masked().String()
		}
		conf.Zones = append(conf.Zones, zz)
	}
	return json.Marshal(conf)
}

// CNIVersion is the spec version the demo speaks to the plugin.
const CNIVersion = "1.1.0"
