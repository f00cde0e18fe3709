package plugin

import (
	"fmt"
	"net"
	"net/netip"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/netns"
)

// check verifies a bridge attachment: the record, the container's
// interface, addresses and default routes, the host veth on its bridge,
// the gateway, the zone's NAT, the published ports and anti-spoofing.
func (bridgeMode) check(p *Plugin, r *request, rec ipam.Attachment, prev *current.Result) error {
	z := r.conf.Zone(rec.Zone)
	if z == nil {
		return fmt.Errorf("attachment is in zone %q, which the network no longer has", rec.Zone)
	}
	if err := p.repairPolicy(r.conf); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, ipc := range prev.IPs {
		want[ipc.Address.String()] = true
	}
	for _, pfx := range rec.IPs {
		n := prefixToIPNet(pfx)
		if !want[n.String()] {
			return fmt.Errorf("leased address %s is not in prevResult", pfx)
		}
	}
	if len(want) != len(rec.IPs) {
		return fmt.Errorf("prevResult lists %d addresses, the lease holds %d", len(want), len(rec.IPs))
	}
	err := netns.Do(r.cmd.Netns, func() error {
		l, err := netlinksafe.LinkByName(r.cmd.IfName)
		if err != nil {
			return fmt.Errorf("interface %s: %w", r.cmd.IfName, err)
		}
		if rec.MAC != "" && l.Attrs().HardwareAddr.String() != rec.MAC {
			return fmt.Errorf("interface %s has MAC %s, want %s", r.cmd.IfName, l.Attrs().HardwareAddr, rec.MAC)
		}
		addrs, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, a := range addrs {
			have[a.IPNet.String()] = true
		}
		for s := range want {
			if !have[s] {
				return fmt.Errorf("interface %s lacks address %s", r.cmd.IfName, s)
			}
		}
		for _, pfx := range rec.IPs {
			if err := checkDefaultRoute(l, pfx.Addr().Is4(), net.IP(z.GatewayFor(pfx.Addr()).AsSlice())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("container %s: %w", r.cmd.Netns, err)
	}
	host, err := netlinksafe.LinkByName(rec.HostVeth)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", rec.HostVeth, err)
	}
	br, err := netlinksafe.LinkByName(z.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", z.Bridge, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("host veth %s is not on bridge %s", rec.HostVeth, z.Bridge)
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("host veth %s is down", rec.HostVeth)
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("bridge %s is down", z.Bridge)
	}
	if !hasGateway(z) || !gatewayOn(br, z) {
		return fmt.Errorf("bridge %s lacks the gateway address of zone %s", z.Bridge, z.Name)
	}
	if r.conf.IPMasq {
		for _, s := range z.Prefixes() {
			ok, err := acl.HasMasq(p.IPT, masqFor(r.conf, z, s))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("egress NAT of zone %s (%s) is missing", z.Name, s)
			}
		}
	}
	if hp, ok := hostPorts(r, &rec); ok {
		ok, err := acl.HasHostPorts(p.IPT, hp)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("published ports of %s/%s are missing", rec.ContainerID, rec.IfName)
		}
	}
	if m, ok := memberOf(r.conf, &rec); ok {
		ok, err := acl.HasMember(p.Sets, m)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("anti-spoofing entries of %s/%s are missing", rec.ContainerID, rec.IfName)
		}
		if ok, err := portLocked(rec.HostVeth, m.MAC); err != nil || !ok {
			return fmt.Errorf("bridge port %s is not locked to %s (%v)", rec.HostVeth, m.MAC, err)
		}
	}
	return nil
}

func checkDefaultRoute(l netlink.Link, v4 bool, gw net.IP) error {
	fam := netlink.FAMILY_V6
	if v4 {
		fam = netlink.FAMILY_V4
	}
	routes, err := netlinksafe.RouteList(l, fam)
	if err != nil {
		return err
	}
	for _, rt := range routes {
		if (rt.Dst == nil || isDefault(rt.Dst)) && rt.Gw.Equal(gw) {
			return nil
		}
	}
	return fmt.Errorf("no default route via %s", gw)
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// gatewayOn reports whether the zone's gateways sit on br itself (CHECK
// only: it dumps addresses).
func gatewayOn(br netlink.Link, z *conf.Zone) bool {
	addrs, err := netlinksafe.AddrList(br, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, gw := range []netip.Addr{z.Gateway, z.Gateway6} {
		found := !gw.IsValid()
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == gw {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
