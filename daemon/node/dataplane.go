package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/overlay"
)

// dataplane is this node's side of the overlay. The daemon runs in the
// node's (host) network namespace, so every call works on the current one.
type dataplane struct {
	cfg   overlay.Config
	guard acl.VXLANGuard
	ipt   acl.Runner
	// quick is ipt with a short lock timeout, for the periodic repair:
	// the loop that applies the cluster's changes must not wait behind a
	// burst of plugin execs holding the host's iptables lock.
	quick acl.Runner
}

// ensure makes the VXLAN device, the peer set and the guard that keeps the
// VXLAN port closed to everyone but the peers. Both compare before they
// write, so on a restart nothing that is right is rewritten (rewriting the
// device's MAC would flush the neighbour entries of every peer).
func (d *dataplane) ensure() (overlay.Device, overlay.Changes, error) {
	return d.ensureWith(d.ipt)
}

// repair is ensure for the periodic check: when the iptables lock is
// busy it gives up quickly with an error wrapping acl.ErrLockTimeout.
func (d *dataplane) repair() (overlay.Device, overlay.Changes, error) {
	if d.quick == nil {
		return d.ensure()
	}
	return d.ensureWith(d.quick)
}

func (d *dataplane) ensureWith(ipt acl.Runner) (overlay.Device, overlay.Changes, error) {
	dev, ch, err := overlay.Ensure(d.cfg)
	if err != nil {
		return dev, ch, err
	}
	if err := acl.EnsureVXLANGuard(ipt, d.guard); err != nil {
		return dev, ch, fmt.Errorf("vxlan guard: %w", err)
	}
	return dev, ch, nil
}

func (d *dataplane) reconcile(peers []overlay.Peer) (overlay.Changes, error) {
	return overlay.Reconcile(d.cfg, peers)
}

// resolveUnderlay finds the underlay address from the configuration: the
// address given (which a local link must hold, on the device given if
// any), or the first global IPv4 address of the device given, or of the
// device of the default IPv4 route.
func resolveUnderlay(addr netip.Addr, dev string) (netip.Addr, string, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	var link netlink.Link
	if dev != "" {
		if link, err = h.LinkByName(dev); err != nil {
			return netip.Addr{}, "", fmt.Errorf("underlay device %s: %w", dev, err)
		}
	} else if !addr.IsValid() {
		if link, err = defaultRouteLink(h); err != nil {
			return netip.Addr{}, "", err
		}
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		if addr.IsValid() {
			if ip == addr {
				return ip, linkName(h, a.LinkIndex), nil
			}
			continue
		}
		if ip.IsGlobalUnicast() && a.Scope == int(netlink.SCOPE_UNIVERSE) {
			return ip, linkName(h, a.LinkIndex), nil
		}
	}
	switch {
	case addr.IsValid() && link != nil:
		return netip.Addr{}, "", fmt.Errorf("underlay address %s is not on device %s", addr, dev)
	case addr.IsValid():
		return netip.Addr{}, "", fmt.Errorf("underlay address %s is not held by any link of this node", addr)
	}
	return netip.Addr{}, "", fmt.Errorf("device %s has no global IPv4 address; set --underlay-address", link.Attrs().Name)
}

func defaultRouteLink(h *netlink.Handle) (netlink.Link, error) {
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.Equal(net.IPv4zero) && maskBits(r.Dst) == 0) && r.LinkIndex > 0 {
			return h.LinkByIndex(r.LinkIndex)
		}
	}
	return nil, errors.New("no default IPv4 route to find the underlay address by; set --underlay-address or --underlay-device")
}

func maskBits(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

func linkName(h *netlink.Handle, index int) string {
	l, err := h.LinkByIndex(index)
	if err != nil {
		return fmt.Sprintf("#%d", index)
	}
	return l.Attrs().Name
}
