package plugin

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// vethSpec describes a veth pair made from inside the container namespace
// with its peer placed straight into the host namespace.
type vethSpec struct {
	ContName, HostName string
	MTU                int
	MAC                net.HardwareAddr
	HostNSFd           int
}

// createVeth runs inside the container namespace and returns the
// container end as the kernel made it (index, MAC).
func createVeth(s vethSpec) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = s.ContName
	attrs.MTU = s.MTU
	attrs.HardwareAddr = s.MAC
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: s.HostName, PeerNamespace: netlink.NsFd(s.HostNSFd)}
	if s.MTU != 0 {
		v.PeerMTU = uint32(s.MTU)
	}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("create veth %s/%s: %w", s.ContName, s.HostName, err)
	}
	l, err := netlinksafe.LinkByName(s.ContName)
	if err != nil {
		_ = netlink.LinkDel(v)
		return nil, fmt.Errorf("find %s after creating it: %w", s.ContName, err)
	}
	return l, nil
}

// configureIface runs inside the container namespace: addresses, link up,
// then a default route per family through its gateway.
func configureIface(l netlink.Link, ips []netip.Prefix, gateway func(netip.Addr) netip.Addr) error {
	for _, p := range ips {
		if p.Addr().Is6() {
			// Our addresses are unique by construction: skip DAD so the
			// container can use them at once.
			_ = writeSysctl("net/ipv6/conf/"+l.Attrs().Name+"/accept_dad", "0")
			_ = writeSysctl("net/ipv6/conf/"+l.Attrs().Name+"/disable_ipv6", "0")
			break
		}
	}
	for _, p := range ips {
		n := prefixToIPNet(p)
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &n}); err != nil && !os.IsExist(err) {
			return fmt.Errorf("add %s to %s: %w", p, l.Attrs().Name, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
	}
	for _, p := range ips {
		gw := gateway(p.Addr())
		if !gw.IsValid() {
			continue
		}
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		d := prefixToIPNet(dst)
		rt := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &d, Gw: net.IP(gw.AsSlice())}
		if err := netlink.RouteAdd(rt); err != nil && !os.IsExist(err) {
			return fmt.Errorf("default route via %s on %s: %w", gw, l.Attrs().Name, err)
		}
	}
	return nil
}
