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
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
)

// Bridge ownership lives in the bridge's alias:
//
//	zonenet-new:<net>:<zone>      made by zonenet, setup not finished
//	zonenet:<net>:<zone>          made by zonenet, ready; GC may delete it
//	zonenet-adopted:<net>:<zone>  existed before (user-made), ready; never deleted
//
// A bridge with any other alias belongs to someone else and is refused.
func bridgeAlias(network, zone string) string    { return "zonenet:" + network + ":" + zone }
func newBridgeAlias(network, zone string) string { return "zonenet-new:" + network + ":" + zone }
func adoptedAlias(network, zone string) string   { return "zonenet-adopted:" + network + ":" + zone }

// ensureBridge returns the zone's bridge, creating and setting it up when
// needed. A ready bridge costs two netlink calls on the ADD path (the link
// and its gateway address), one ipset dump per zone subnet under a policy,
// and no iptables exec; a missing gateway or a flushed filter table (a
// host that was tampered with, a firewall reload) is repaired. When this call created the
// bridge, undo takes the zone's setup away again, for an ADD that fails
// later on.
func (p *Plugin) ensureBridge(c *conf.NetConf, z *conf.Zone) (br netlink.Link, undo func(), err error) {
	ready, adopted := bridgeAlias(c.Name, z.Name), adoptedAlias(c.Name, z.Name)
	link, err := netlinksafe.LinkByName(z.Bridge)
	if err != nil {
		return p.createBridge(c, z)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, nil, &conf.Error{Code: types.ErrInvalidNetworkConfig, Key: "zones (" + z.Name + ").bridge",
			Value: z.Bridge, Msg: fmt.Sprintf("names an existing %s device, not a bridge", link.Type())}
	}
	alias := link.Attrs().Alias
	switch alias {
	case ready, adopted:
		if link.Attrs().Flags&net.FlagUp != 0 && hasGateway(z) && p.policyIntact(c) &&
			(!c.Cluster() || proxyARPIntact(z.Bridge, z.Subnet)) {
			return link, nil, nil
		}
	case newBridgeAlias(c.Name, z.Name):
		adopted = ready // ours: an ADD died before finishing it
	case "":
		// A bridge the user made and named in the config: use it, mark
		// it, never delete it.
	default:
		return nil, nil, &conf.Error{Code: types.ErrInvalidNetworkConfig, Key: "zones (" + z.Name + ").bridge",
			Value: z.Bridge, Msg: fmt.Sprintf("is an existing bridge that belongs to someone else (alias %q)", alias)}
	}
	pol, err := LoadPolicy(c, c.Policy)
	if err != nil {
		return nil, nil, err
	}
	if err := p.setupZone(c, z, link, pol, nil); err != nil {
		return nil, nil, err
	}
	if alias == ready || alias == adoptedAlias(c.Name, z.Name) {
		return link, nil, nil
	}
	if err := netlink.LinkSetAlias(link, adopted); err != nil {
		return nil, nil, fmt.Errorf("mark bridge %s: %w", z.Bridge, err)
	}
	return link, nil, nil
}

// createBridge makes the zone's bridge and sets the zone up. The bridge is
// born with the "new" alias, so a crash half way leaves one we recognise.
func (p *Plugin) createBridge(c *conf.NetConf, z *conf.Zone) (netlink.Link, func(), error) {
	// A bad policy fails the ADD before anything changes on the host.
	pol, err := LoadPolicy(c, c.Policy)
	if err != nil {
		return nil, nil, err
	}
	nb := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
	nb.Name = z.Bridge
	nb.Alias = newBridgeAlias(c.Name, z.Name)
	if c.MTU != 0 {
		nb.MTU = c.MTU
	}
	if err := netlink.LinkAdd(nb); errors.Is(err, syscall.EEXIST) {
		// Another exec made it a moment ago: set up (idempotently) and
		// leave any undo to its maker.
		return p.ensureBridge(c, z)
	} else if err != nil {
		return nil, nil, fmt.Errorf("create bridge %s: %w", z.Bridge, err)
	}
	link, err := netlinksafe.LinkByName(z.Bridge)
	if err != nil {
		return nil, nil, fmt.Errorf("find bridge %s: %w", z.Bridge, err)
	}
	u := &zoneUndo{p: p, c: c, z: z, bridge: link, sysctls: map[string]string{}}
	if err := p.setupZone(c, z, link, pol, u); err != nil {
		u.run()
		return nil, nil, err
	}
	if err := netlink.LinkSetAlias(link, bridgeAlias(c.Name, z.Name)); err != nil {
		u.run()
		return nil, nil, fmt.Errorf("mark bridge %s: %w", z.Bridge, err)
	}
	return link, u.run, nil
}

// hasGateway reports whether the zone's gateway addresses are local
// addresses of this host. One route lookup per family, not an address
// dump: a dump lists every veth's link-local address too, and would grow
// with the number of containers.
func hasGateway(z *conf.Zone) bool {
	for _, gw := range []netip.Addr{z.Gateway, z.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		routes, err := netlink.RouteGet(net.IP(gw.AsSlice()))
		if err != nil || len(routes) == 0 || routes[0].Type != unix.RTN_LOCAL {
			return false
		}
	}
	return true
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
// installs the zone's egress NAT and the network's policy (pol, when not
// nil). Each step is idempotent. u, when not nil, records what changed.
func (p *Plugin) setupZone(c *conf.NetConf, z *conf.Zone, br netlink.Link, pol *conf.Policy, u *zoneUndo) error {
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
	if c.Cluster() && z.Subnet.IsValid() {
		// Every node has the zone's whole subnet on its bridge, but the
		// addresses of other nodes' blocks are routed over the overlay
		// (block routes, more specific than the bridge's connected
		// subnet). A container sees them on-link and ARPs for them: the
		// bridge answers with its own MAC, so the packets come up to the
		// host to be routed. It answers only for addresses routed out of
		// another device, so local containers still answer for
		// themselves. proxy_delay 0: answer at once, not after a random
		// wait of up to 0.8 s. IPv6 needs no proxy_ndp here because
		// cross-node IPv6 is not routed yet: an IPv6 zone's addresses on
		// other nodes are unreachable until it is.
		if err := set("net/ipv4/conf/"+z.Bridge+"/proxy_arp", "1"); err != nil {
			return err
		}
		if err := set("net/ipv4/neigh/"+z.Bridge+"/proxy_delay", "0"); err != nil {
			return err
		}
	}
	if err := p.applyPolicy(c, pol); err != nil {
		return err
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

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + name)
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(name, value string) error {
	_, err := setSysctl(name, value)
	return err
}

func dnsOf(c *conf.NetConf) types.DNS {
	return types.DNS{Nameservers: c.DNS.Nameservers, Domain: c.DNS.Domain,
		Search: c.DNS.Search, Options: c.DNS.Options}
}
