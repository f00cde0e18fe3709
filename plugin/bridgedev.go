package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
)

// ensureBridge returns the zone's bridge, creating and setting it up when
// needed. A bridge carrying our alias is ready: the common ADD costs one
// link lookup and no iptables exec. When this call created the bridge, undo
// takes the zone's setup away again, for an ADD that fails later on.
func (p *Plugin) ensureBridge(c *conf.NetConf, z *conf.Zone) (br netlink.Link, undo func(), err error) {
	alias := bridgeAlias(c.Name, z.Name)
	link, err := netlinksafe.LinkByName(z.Bridge)
	if err == nil {
		if _, ok := link.(*netlink.Bridge); !ok {
			return nil, nil, &conf.Error{Code: types.ErrInvalidNetworkConfig, Key: "zones (" + z.Name + ").bridge",
				Value: z.Bridge, Msg: fmt.Sprintf("names an existing %s device, not a bridge", link.Type())}
		}
		if link.Attrs().Alias == alias && link.Attrs().Flags&net.FlagUp != 0 {
			return link, nil, nil
		}
	} else {
		nb := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
		nb.Name = z.Bridge
		if c.MTU != 0 {
			nb.MTU = c.MTU
		}
		err := netlink.LinkAdd(nb)
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, nil, fmt.Errorf("create bridge %s: %w", z.Bridge, err)
		}
		if link, err = netlinksafe.LinkByName(z.Bridge); err != nil {
			return nil, nil, fmt.Errorf("find bridge %s: %w", z.Bridge, err)
		}
		if err == nil {
			u := &zoneUndo{p: p, c: c, z: z, bridge: link, sysctls: map[string]string{}}
			undo = u.run
			err = p.setupZone(c, z, link, u)
		}
		if err != nil {
			if undo != nil {
				undo()
			}
			return nil, nil, err
		}
		if err := netlink.LinkSetAlias(link, alias); err != nil {
			undo()
			return nil, nil, fmt.Errorf("mark bridge %s: %w", z.Bridge, err)
		}
		return link, undo, nil
	}
	// The bridge exists but its setup never completed (an ADD died half
	// way): finish it. It is not ours to take away again.
	if err := p.setupZone(c, z, link, nil); err != nil {
		return nil, nil, err
	}
	if err := netlink.LinkSetAlias(link, alias); err != nil {
		return nil, nil, fmt.Errorf("mark bridge %s: %w", z.Bridge, err)
	}
	return link, nil, nil
}

// zoneUndo remembers what setting up a new zone changed on the host.
type zoneUndo struct {
	p       *Plugin
	c       *conf.NetConf
	z       *conf.Zone
	bridge  netlink.Link
	sysctls map[string]string // name → value before
	masq    []acl.Masq
}

// run takes the zone's setup away, unless another container has joined
// the bridge meanwhile.
func (u *zoneUndo) run() {
	if hasPorts(u.bridge) {
		return
	}
	if err := netlink.LinkDel(u.bridge); err != nil {
		u.p.warnf("rollback: delete bridge %s: %v", u.z.Bridge, err)
		return
	}
	for _, m := range u.masq {
		if err := acl.RemoveMasq(u.p.IPT, m.Family(), m.Network, m.Zone); err != nil {
			u.p.warnf("rollback: %v", err)
		}
		if err := acl.RemoveUnused(u.p.IPT, m.Family()); err != nil {
			u.p.warnf("rollback: %v", err)
		}
	}
	for name, old := range u.sysctls {
		_ = writeSysctl(name, old)
	}
}

// setupZone puts the gateways on the bridge, turns forwarding on and
// installs the zone's egress NAT. Each step is idempotent. u, when not
// nil, records what changed.
func (p *Plugin) setupZone(c *conf.NetConf, z *conf.Zone, br netlink.Link, u *zoneUndo) error {
	set := func(name, value string) error {
		old, err := setSysctl(name, value)
		if err == nil && u != nil && old != value {
			if _, seen := u.sysctls[name]; !seen {
				u.sysctls[name] = old
			}
		}
		return err
	}
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
		if err := set("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	if z.Subnet6.IsValid() {
		if err := set("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	if !c.IPMasq {
		return nil
	}
	for _, s := range z.Prefixes() {
		m := masqFor(c, z, s)
		if u != nil {
			u.masq = append(u.masq, m)
		}
		if err := acl.EnsureMasq(p.IPT, m); err != nil {
			return fmt.Errorf("egress NAT of zone %s: %w", z.Name, err)
		}
	}
	return nil
}

// setSysctl sets a sysctl of the current namespace unless it already holds
// the value, and returns the value it had.
func setSysctl(name, value string) (old string, err error) {
	path := "/proc/sys/" + name
	b, rerr := os.ReadFile(path)
	old = strings.TrimSpace(string(b))
	if rerr == nil && old == value {
		return old, nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return old, fmt.Errorf("set %s=%s: %w", name, value, err)
	}
	return old, nil
}

func writeSysctl(name, value string) error {
	_, err := setSysctl(name, value)
	return err
}

func dnsOf(c *conf.NetConf) types.DNS {
	return types.DNS{Nameservers: c.DNS.Nameservers, Domain: c.DNS.Domain,
		Search: c.DNS.Search, Options: c.DNS.Options}
}
