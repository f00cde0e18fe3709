package demo

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// NodeSpec is one node of the cluster demo.
type NodeSpec struct {
	Name     string     // also zonenetd's node name
	Underlay netip.Addr // its address on the underlay bridge
	// Containers are attached on this node; names are unique in the
	// cluster, since the matrix is one table across the nodes.
	Containers []ContainerSpec
}

// Delay is the one-way delay between two nodes' underlay addresses, added
// to every packet each of them sends the other (so the round trip is
// twice OneWay).
type Delay struct {
	A, B   string
	OneWay time.Duration
}

// ClusterUnderlay is the network between the nodes, inside the underlay
// namespace; etcd listens on its first address.
var ClusterUnderlay = netip.MustParsePrefix("10.77.0.0/24")

// ReferenceNodes places the reference zones on three nodes: a web, a
// database and a monitoring container on each, and on eu the management
// address 10.0.3.10 the reference policy opens backend:3306 to. eu is
// attached first, so it claims the first block of every zone and
// 10.0.3.10 lies in a block it owns, as a static address must.
func ReferenceNodes() []NodeSpec {
	var out []NodeSpec
	for i, name := range []string{"eu", "us", "ap"} {
		n := NodeSpec{Name: name, Underlay: nthAddr(ClusterUnderlay, 11+i)}
		n.Containers = []ContainerSpec{
			{Name: name + "-web", Zone: "frontend"},
			{Name: name + "-db", Zone: "backend"},
			{Name: name + "-mon", Zone: "mgmt"},
		}
		if name == "eu" {
			n.Containers = append(n.Containers, ContainerSpec{Name: "eu-admin", Zone: "mgmt", IP: netip.MustParseAddr("10.0.3.10")})
		}
		out = append(out, n)
	}
	return out
}

// ContinentDelays are one-way delays of the order of Frankfurt–Virginia,
// Frankfurt–Singapore and Virginia–Singapore.
var ContinentDelays = []Delay{
	{A: "eu", B: "us", OneWay: 40 * time.Millisecond},
	{A: "eu", B: "ap", OneWay: 90 * time.Millisecond},
	{A: "us", B: "ap", OneWay: 70 * time.Millisecond},
}

func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// checkNodes refuses what would make names or addresses collide before
// anything is created.
func checkNodes(nodes []NodeSpec, delays []Delay) error {
	if len(nodes) == 0 {
		return errors.New("cluster demo: no nodes")
	}
	names, addrs, ctrs := map[string]bool{}, map[netip.Addr]bool{}, map[string]bool{}
	for _, n := range nodes {
		if !validName(n.Name) || len(n.Name) > 8 {
			return fmt.Errorf("cluster demo: node name %q: use up to 8 lowercase letters, digits and '-'", n.Name)
		}
		if names[n.Name] {
			return fmt.Errorf("cluster demo: node %q defined twice", n.Name)
		}
		names[n.Name] = true
		if !ClusterUnderlay.Contains(n.Underlay) || n.Underlay == nthAddr(ClusterUnderlay, 1) || addrs[n.Underlay] {
			return fmt.Errorf("cluster demo: node %s: underlay address %s is outside %s, etcd's or taken", n.Name, n.Underlay, ClusterUnderlay)
		}
		addrs[n.Underlay] = true
		for _, s := range n.Containers {
			if ctrs[s.Name] {
				return fmt.Errorf("cluster demo: container %q on two nodes", s.Name)
			}
			ctrs[s.Name] = true
		}
	}
	for _, d := range delays {
		if !names[d.A] || !names[d.B] || d.A == d.B || d.OneWay < 0 {
			return fmt.Errorf("cluster demo: delay %s-%s %s: not between two nodes of the demo", d.A, d.B, d.OneWay)
		}
	}
	return nil
}
