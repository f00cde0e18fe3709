//go:build linux

package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/overlay"
)

// The paths measured. Each gets its own namespaces, so nothing one sets up
// can help or hinder another; the addresses repeat between them, which the
// namespaces keep apart.
const (
	pathVeth    = "raw veth pair"
	pathRouted  = "routed underlay, no encap"
	pathHand    = "VXLAN built by hand (ip)"
	pathZonenet = "VXLAN by zonenet overlay"
)

// Addresses of the two-node topology: underlay 192.168.100.0/24, node A's
// container block 10.244.0.0/26, node B's 10.244.0.64/26.
var (
	underlay = [2]netip.Addr{netip.MustParseAddr("192.168.100.1"), netip.MustParseAddr("192.168.100.2")}
	blocks   = [2]netip.Prefix{netip.MustParsePrefix("10.244.0.0/26"), netip.MustParsePrefix("10.244.0.64/26")}
	handMACs = [2]string{"02:00:00:00:be:0a", "02:00:00:00:be:0b"}
)

// setup is one built path: the client and server container namespaces,
// and the server's address.
type setup struct {
	name   string
	client string // namespace path
	server string
	dst    netip.Addr
	note   string
}

// builder makes namespaces named after one run's tag and removes them all.
type builder struct {
	tag     string
	created []string
	log     func(string, ...any)
}

func (b *builder) ns(name string) (string, error) {
	full := fmt.Sprintf("znob-%s-%s", b.tag, name)
	p, err := netns.Create(full)
	if err != nil {
		return "", err
	}
	b.created = append(b.created, full)
	return p, nil
}

func (b *builder) cleanup() {
	for i := len(b.created) - 1; i >= 0; i-- {
		if err := netns.Delete(b.created[i]); err != nil {
			b.log("delete netns %s: %v", b.created[i], err)
		}
	}
	b.created = nil
}

// in runs fn with a netlink handle inside the namespace at path.
func in(path string, fn func(h *netlink.Handle) error) error {
	nsh, err := vnetns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// veth creates a veth in ns a with its peer in ns b, both up, with the
// given MTU, and adds the addresses ("" for none).
func veth(a, nameA, addrA, b, nameB, addrB string, mtu int) error {
	bh, err := vnetns.GetFromPath(b)
	if err != nil {
		return err
	}
	defer bh.Close()
	err = in(a, func(h *netlink.Handle) error {
		return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA, MTU: mtu}, PeerName: nameB,
			PeerMTU: uint32(mtu), PeerNamespace: netlink.NsFd(int(bh))})
	})
	if err != nil {
		return fmt.Errorf("veth %s: %w", nameA, err)
	}
	if err := in(a, func(h *netlink.Handle) error { return up(h, nameA, addrA, "") }); err != nil {
		return err
	}
	return in(b, func(h *netlink.Handle) error { return up(h, nameB, addrB, "") })
}

// up adds an address (if any) to a link, enslaves it (if master is set) and
// sets it up.
func up(h *netlink.Handle, name, cidr, master string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if cidr != "" {
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("address %s on %s: %w", cidr, name, err)
		}
	}
	if master != "" {
		m, err := h.LinkByName(master)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(l, m); err != nil {
			return err
		}
	}
	return h.LinkSetUp(l)
}

func route(h *netlink.Handle, dev string, dst netip.Prefix, gw netip.Addr) error {
	l, err := h.LinkByName(dev)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}
	if dst.IsValid() {
		r.Dst = &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}
	}
	return h.RouteAdd(r)
}

// buildVeth joins the two containers with one veth pair: the floor.
func (b *builder) buildVeth() (setup, error) {
	c, err := b.ns("veth-c")
	if err != nil {
		return setup{}, err
	}
	s, err := b.ns("veth-s")
	if err != nil {
		return setup{}, err
	}
	if err := veth(c, "eth0", "10.99.0.1/24", s, "eth0", "10.99.0.2/24", 1500); err != nil {
		return setup{}, err
	}
	return setup{name: pathVeth, client: c, server: s, dst: netip.MustParseAddr("10.99.0.2")}, nil
}

// twoNodes builds what every node path shares: an underlay bridge, node A
// and node B on it, and on each a zone bridge with one container whose
// links have the given MTU. It returns the node and container namespaces.
func (b *builder) twoNodes(prefix string, mtu int) (nodes, ctrs [2]string, err error) {
	ul, err := b.ns(prefix + "-ul")
	if err != nil {
		return nodes, ctrs, err
	}
	err = in(ul, func(h *netlink.Handle) error {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
			return err
		}
		return up(h, "br0", "", "")
	})
	if err != nil {
		return nodes, ctrs, err
	}
	for i, side := range []string{"a", "b"} {
		if nodes[i], err = b.ns(prefix + "-node" + side); err != nil {
			return nodes, ctrs, err
		}
		if ctrs[i], err = b.ns(prefix + "-ctr" + side); err != nil {
			return nodes, ctrs, err
		}
		if err = veth(ul, "ul"+side, "", nodes[i], "eth0", underlay[i].String()+"/24", 1500); err != nil {
			return nodes, ctrs, err
		}
		if err = in(ul, func(h *netlink.Handle) error { return up(h, "ul"+side, "", "br0") }); err != nil {
			return nodes, ctrs, err
		}
		gw := blocks[i].Addr().Next()
		err = netns.Do(nodes[i], func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) })
		if err != nil {
			return nodes, ctrs, err
		}
		err = in(nodes[i], func(h *netlink.Handle) error {
			if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "zbr", MTU: mtu}}); err != nil {
				return err
			}
			return up(h, "zbr", netip.PrefixFrom(gw, 26).String(), "")
		})
		if err != nil {
			return nodes, ctrs, err
		}
		ctrAddr := netip.PrefixFrom(gw.Next(), 26).String()
		if err = veth(nodes[i], "h0", "", ctrs[i], "eth0", ctrAddr, mtu); err != nil {
			return nodes, ctrs, err
		}
		if err = in(nodes[i], func(h *netlink.Handle) error { return up(h, "h0", "", "zbr") }); err != nil {
			return nodes, ctrs, err
		}
		if err = in(ctrs[i], func(h *netlink.Handle) error { return route(h, "eth0", netip.Prefix{}, gw) }); err != nil {
			return nodes, ctrs, err
		}
	}
	return nodes, ctrs, nil
}

func serverAddr() netip.Addr { return blocks[1].Addr().Next().Next() }

// buildRouted routes the blocks over the underlay without encapsulation,
// as host-gw does: the cost of the two extra hops alone.
func (b *builder) buildRouted() (setup, error) {
	nodes, ctrs, err := b.twoNodes("rt", 1500)
	if err != nil {
		return setup{}, err
	}
	for i := range nodes {
		peer := 1 - i
		if err := in(nodes[i], func(h *netlink.Handle) error { return route(h, "eth0", blocks[peer], underlay[peer]) }); err != nil {
			return setup{}, err
		}
	}
	return setup{name: pathRouted, client: ctrs[0], server: ctrs[1], dst: serverAddr()}, nil
}

// buildHand programs the overlay the way an operator would by hand:
// iproute2 commands, static FDB, learning off.
func (b *builder) buildHand() (setup, error) {
	nodes, ctrs, err := b.twoNodes("hand", 1450)
	if err != nil {
		return setup{}, err
	}
	for i := range nodes {
		peer := 1 - i
		name := nsName(nodes[i])
		cmds := [][]string{
			{"ip", "-n", name, "link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "4789",
				"local", underlay[i].String(), "nolearning"},
			{"ip", "-n", name, "link", "set", "vx0", "address", handMACs[i], "mtu", "1450", "up"},
			{"bridge", "-n", name, "fdb", "append", handMACs[peer], "dev", "vx0", "dst", underlay[peer].String(), "self", "permanent"},
			{"ip", "-n", name, "neigh", "add", underlay[peer].String(), "lladdr", handMACs[peer], "dev", "vx0", "nud", "permanent"},
			{"ip", "-n", name, "route", "add", blocks[peer].String(), "via", underlay[peer].String(), "dev", "vx0", "onlink"},
		}
		for _, c := range cmds {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				return setup{}, fmt.Errorf("%s: %w: %s", strings.Join(c, " "), err, out)
			}
		}
	}
	return setup{name: pathHand, client: ctrs[0], server: ctrs[1], dst: serverAddr(), note: vxlanDetails(nodes[0], "vx0")}, nil
}

// buildZonenet programs the overlay with the overlay package, as the
// daemon will.
func (b *builder) buildZonenet() (setup, error) {
	nodes, ctrs, err := b.twoNodes("zn", 1450)
	if err != nil {
		return setup{}, err
	}
	var cfgs [2]overlay.Config
	var devs [2]overlay.Device
	for i := range nodes {
		cfgs[i] = overlay.Config{Underlay: underlay[i], NodeName: fmt.Sprintf("bench-%d", i)}
		err := netns.Do(nodes[i], func() error {
			var err error
			devs[i], _, err = overlay.Ensure(cfgs[i])
			return err
		})
		if err != nil {
			return setup{}, err
		}
	}
	for i := range nodes {
		peer := 1 - i
		p := []overlay.Peer{{Name: cfgs[peer].NodeName, Underlay: underlay[peer], VTEPMAC: devs[peer].MAC, Blocks: []netip.Prefix{blocks[peer]}}}
		err := netns.Do(nodes[i], func() error { _, err := overlay.Reconcile(cfgs[i], p); return err })
		if err != nil {
			return setup{}, err
		}
	}
	return setup{name: pathZonenet, client: ctrs[0], server: ctrs[1], dst: serverAddr(), note: vxlanDetails(nodes[0], overlay.DefaultDevice)}, nil
}

func nsName(path string) string { return path[strings.LastIndex(path, "/")+1:] }

// vxlanDetails is `ip -d link show` of the device, for the log: the two
// VXLAN paths should differ in nothing that matters.
func vxlanDetails(nsPath, dev string) string {
	out, err := exec.Command("ip", "-n", nsName(nsPath), "-d", "-o", "link", "show", dev).CombinedOutput()
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(out))
}
