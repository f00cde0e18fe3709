package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/ipam"
)

// ipamZone turns a zone's configuration into the allocator's pools.
func ipamZone(z *conf.Zone) ipam.Zone {
	iz := ipam.Zone{Name: z.Name}
	if z.Subnet.IsValid() {
		iz.Pools = append(iz.Pools, ipam.Pool{Subnet: z.Subnet, Gateway: z.Gateway,
			Start: z.RangeStart, End: z.RangeEnd, Exclude: z.Exclude})
	}
	if z.Subnet6.IsValid() {
		iz.Pools = append(iz.Pools, ipam.Pool{Subnet: z.Subnet6, Gateway: z.Gateway6,
			Start: z.RangeStart6, End: z.RangeEnd6, Exclude: z.Exclude})
	}
	return iz
}

// hostVethName is derived from the attachment key, so a veth left by an
// ADD that died half way can be found again by GC from the lease alone.
func hostVethName(k ipam.Key) string {
	h := sha256.Sum256([]byte(k.Network + "\x00" + k.ContainerID + "\x00" + k.IfName))
	return "zn" + hex.EncodeToString(h[:6])
}

// containerMAC derives a stable, locally administered unicast MAC from the
// attachment key.
func containerMAC(k ipam.Key) net.HardwareAddr {
	h := sha256.Sum256([]byte("mac\x00" + k.Network + "\x00" + k.ContainerID + "\x00" + k.IfName))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

// masqFor describes a zone's egress NAT for one of its subnets.
func masqFor(c *conf.NetConf, z *conf.Zone, subnet netip.Prefix) acl.Masq {
	m := acl.Masq{Network: c.Name, Zone: z.Name, Subnet: subnet}
	for i := range c.Zones {
		m.Internal = append(m.Internal, c.Zones[i].Prefixes()...)
	}
	return m
}

// removeIdleZones deletes the bridge and NAT rules of every zone with no
// attachment left, and the network's filter when no zone is left. Runs under GC only, never on the ADD/DEL path.
func (p *Plugin) removeIdleZones(r *request, used map[string]bool) error {
	var errs []error
	for i := range r.conf.Zones {
		z := &r.conf.Zones[i]
		if used[z.Name] {
			continue
		}
		link, err := netlinksafe.LinkByName(z.Bridge)
		if err == nil {
			ours := link.Attrs().Alias == bridgeAlias(r.conf.Name, z.Name) ||
				link.Attrs().Alias == newBridgeAlias(r.conf.Name, z.Name)
			if !ours || hasPorts(link) {
				continue // not made by us, or still in use by someone else
			}
			if err := netlink.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("delete bridge %s: %w", z.Bridge, err))
			}
		}
		if z.Subnet.IsValid() {
			errs = append(errs, acl.RemoveMasq(p.IPT, acl.IPv4, r.conf.Name, z.Name))
		}
		if z.Subnet6.IsValid() {
			errs = append(errs, acl.RemoveMasq(p.IPT, acl.IPv6, r.conf.Name, z.Name))
		}
	}
	if len(used) == 0 {
		errs = append(errs, acl.RemoveFilter(p.IPT, r.conf.Name))
		errs = append(errs, acl.RemoveGuard(p.IPT, p.Sets, r.conf.Name, guardZones(r.conf)))
		for _, f := range []acl.Family{acl.IPv4, acl.IPv6} {
			errs = append(errs, acl.RemoveUnused(p.IPT, f))
		}
	}
	return errors.Join(errs...)
}

// hasPorts reports whether any link is enslaved to br.
func hasPorts(br netlink.Link) bool {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return true // when in doubt, keep the bridge
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return true
		}
	}
	return false
}
