package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
)

// ensureBridge returns the zone's bridge, creating and setting it up when
// needed. A bridge carrying our alias is ready: the common ADD costs one
// link lookup and no iptables exec.
func (p *Plugin) ensureBridge(c *conf.NetConf, z *conf.Zone) (netlink.Link, error) {
	alias := bridgeAlias(c.Name, z.Name)
	link, err := netlinksafe.LinkByName(z.Bridge)
	if err == nil {
		if _, ok := link.(*netlink.Bridge); !ok {
			return nil, &conf.Error{Code: types.ErrInvalidNetworkConfig, Key: "zones (" + z.Name + ").bridge",
				Value: z.Bridge, Msg: fmt.Sprintf("names an existing %s device, not a bridge", link.Type())}
		}
		if link.Attrs().Alias == alias && link.Attrs().Flags&net.FlagUp != 0 {
			return link, nil
		}
	} else {
		br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
		br.Name = z.Bridge
		if c.MTU != 0 {
			br.MTU = c.MTU
		}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", z.Bridge, err)
		}
		if link, err = netlinksafe.LinkByName(z.Bridge); err != nil {
			return nil, fmt.Errorf("find bridge %s: %w", z.Bridge, err)
		}
	}
	if err := p.setupZone(c, z, link); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetAlias(link, alias); err != nil {
		return nil, fmt.Errorf("mark bridge %s: %w", z.Bridge, err)
	}
	return link, nil
}

// setupZone puts the gateways on the bridge, turns forwarding on and
// installs the zone's egress NAT. Each step is idempotent.
func (p *Plugin) setupZone(c *conf.NetConf, z *conf.Zone, br netlink.Link) error {
	if z.Subnet6.IsValid() {
		// The gateway address must be usable at once, and the bridge
		// must not autoconfigure from router advertisements.
		_ = writeSysctl("net/ipv6/conf/"+z.Bridge+"/accept_dad", "0")
		_ = writeSysctl("net/ipv6/conf/"+z.Bridge+"/accept_ra", "0")
	}
	for _, gw := range []struct {
		addr   netip.Addr
		subnet netip.Prefix
	}{{z.Gateway, z.Subnet}, {z.Gateway6, z.Subnet6}} {
		if !gw.subnet.IsValid() {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(gw.addr.AsSlice()),
			Mask: net.CIDRMask(gw.subnet.Bits(), gw.addr.BitLen())}}
		if err := netlink.AddrAdd(br, a); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("add gateway %s to bridge %s: %w", gw.addr, z.Bridge, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("set bridge %s up: %w", z.Bridge, err)
	}
	if z.Subnet.IsValid() {
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	if z.Subnet6.IsValid() {
		if err := writeSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	if !c.IPMasq {
		return nil
	}
	for _, s := range z.Prefixes() {
		if err := acl.EnsureMasq(p.IPT, masqFor(c, z, s)); err != nil {
			return fmt.Errorf("egress NAT of zone %s: %w", z.Name, err)
		}
	}
	return nil
}

// writeSysctl sets a sysctl of the current namespace unless it already
// holds the value.
func writeSysctl(name, value string) error {
	path := "/proc/sys/" + name
	if b, err := os.ReadFile(path); err == nil && string(b) == value+"\n" {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s=%s: %w", name, value, err)
	}
	return nil
}

func dnsOf(c *conf.NetConf) types.DNS {
	return types.DNS{Nameservers: c.DNS.Nameservers, Domain: c.DNS.Domain,
		Search: c.DNS.Search, Options: c.DNS.Options}
}
