package node

import (
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/zonenet/zonenet/conf"
)

// network is one network this node serves, as its conflist describes it.
type network struct {
	path string
	conf *conf.NetConf
	raw  []byte // the conflist as read, for plugin.ApplyPolicy
}

// loadNetworks reads the zonenet entry of every conflist. Each must be in
// cluster mode with zones, the names must differ, and no subnet of one
// network may overlap a subnet of another: both would be routed through
// the same overlay, and a route cannot tell the networks apart.
func loadNetworks(paths []string) ([]network, error) {
	var out []network
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("conflist: %w", err)
		}
		c, err := conf.FromConfList(data)
		if err != nil {
			return nil, fmt.Errorf("conflist %s: %w", p, err)
		}
		if !c.Cluster() {
			return nil, fmt.Errorf("conflist %s: network %s has store %q; zonenetd serves networks with \"store\": \"etcd\"", p, c.Name, c.Store)
		}
		if c.Mode != conf.ModeBridge || len(c.Zones) == 0 {
			return nil, fmt.Errorf("conflist %s: network %s: mode %s with %d zones has no addresses to route between nodes", p, c.Name, c.Mode, len(c.Zones))
		}
		for _, o := range out {
			if o.conf.Name == c.Name {
				return nil, fmt.Errorf("conflist %s: network %s is also in %s", p, c.Name, o.path)
			}
			if a, b, ok := overlapping(o.conf, c); ok {
				return nil, fmt.Errorf("conflist %s: subnet %s of network %s overlaps %s of network %s (%s)", p, b, c.Name, a, o.conf.Name, o.path)
			}
		}
		out = append(out, network{path: p, conf: c, raw: data})
	}
	return out, nil
}

func overlapping(a, b *conf.NetConf) (netip.Prefix, netip.Prefix, bool) {
	for _, za := range a.Zones {
		for _, pa := range za.Prefixes() {
			for _, zb := range b.Zones {
				for _, pb := range zb.Prefixes() {
					if pa.Overlaps(pb) {
						return pa, pb, true
					}
				}
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}

// shared returns the value every network agrees on for one key, or an
// error naming two that differ. The daemon has one socket and one store
// directory, so networks served together must share them.
func shared(nets []network, key string, get func(*conf.NetConf) string) (string, error) {
	v := get(nets[0].conf)
	for _, n := range nets[1:] {
		if w := get(n.conf); w != v {
			return "", fmt.Errorf("networks %s (%s) and %s (%s) differ in %s: %q and %q; zonenetd serves networks that share it",
				nets[0].conf.Name, nets[0].path, n.conf.Name, n.path, key, v, w)
		}
	}
	return v, nil
}

// names are the networks' names, sorted.
func names(nets []network) []string {
	out := make([]string, len(nets))
	for i, n := range nets {
		out[i] = n.conf.Name
	}
	slices.Sort(out)
	return out
}

// mtuAdvice says, for each network whose containers would get a larger MTU
// than the overlay carries, what to set. Nothing is changed: the plugin
// applies the conflist's "mtu" to bridges and veths, or, without one, the
// overlay device's.
func mtuAdvice(nets []network, overlayMTU int) []string {
	var out []string
	for _, n := range nets {
		if m := n.conf.MTU; m > overlayMTU {
			out = append(out, fmt.Sprintf("network %s (%s): \"mtu\" %d is more than the overlay's %d: cross-node packets above %d bytes are dropped; set \"mtu\": %d or leave it out",
				n.conf.Name, n.path, m, overlayMTU, overlayMTU, overlayMTU))
		}
	}
	return out
}
