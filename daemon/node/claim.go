package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/conf"
)

// errNotConnected is what a claim gets before etcd answered once with the
// whole cluster state (or after the daemon stopped).
var errNotConnected = errors.New("zonenetd is not connected to etcd yet")

// claimBlock claims, for this node, a block of a zone of a served network.
// The request must match the network's conflist: the zone exists, the
// subnet is the zone's, and the block size is the network's. A plugin
// running with another configuration than the daemon would otherwise own
// blocks the peers never route.
func (d *Daemon) claimBlock(ctx context.Context, network, zone string, subnet netip.Prefix, bits int) (netip.Prefix, error) {
	c := d.netConf(network)
	if c == nil {
		return netip.Prefix{}, fmt.Errorf("network %s is not served by this zonenetd (its conflists: %v)", network, names(d.nets))
	}
	z := zoneOf(c, zone)
	if z == nil {
		return netip.Prefix{}, fmt.Errorf("network %s has no zone %s in zonenetd's conflist", network, zone)
	}
	if subnet != z.Subnet && subnet != z.Subnet6 {
		return netip.Prefix{}, fmt.Errorf("zone %s of network %s: subnet %s is not the zone's in zonenetd's conflist (%v)", zone, network, subnet, z.Prefixes())
	}
	if want := c.BlockBits(subnet); bits != want {
		return netip.Prefix{}, fmt.Errorf("zone %s of network %s: block size /%d differs from zonenetd's conflist (/%d)", zone, network, bits, want)
	}
	select {
	case <-d.ready:
	case <-ctx.Done():
		return netip.Prefix{}, fmt.Errorf("%w: %w", errNotConnected, ctx.Err())
	}
	store := d.currentStore()
	if store == nil {
		return netip.Prefix{}, errNotConnected
	}
	b, err := store.ClaimBlock(ctx, cluster.BlockRequest{Network: network, Zone: zone, Subnet: subnet, BlockBits: bits, Node: d.cfg.NodeName})
	if err != nil {
		return netip.Prefix{}, err
	}
	d.log.Info("claimed a block", "network", network, "zone", zone, "block", b.Prefix)
	return b.Prefix, nil
}

func (d *Daemon) netConf(name string) *conf.NetConf {
	for _, n := range d.nets {
		if n.conf.Name == name {
			return n.conf
		}
	}
	return nil
}

func zoneOf(c *conf.NetConf, name string) *conf.Zone {
	for i := range c.Zones {
		if c.Zones[i].Name == name {
			return &c.Zones[i]
		}
	}
	return nil
}
