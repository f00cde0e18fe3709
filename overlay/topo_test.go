//go:build linux

package overlay_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/overlay"
	"github.com/zonenet/zonenet/test/cnitest"
)

// A simulated cluster: an underlay namespace holding one bridge, and per
// node a namespace ("the node's host namespace") with a veth into that
// bridge, a zone bridge holding the node's block gateway, and container
// namespaces on the zone bridge. Every name and subnet is unique to the
// test; deleting the namespaces (t.Cleanup) removes everything.

type cluster struct {
	t     *testing.T
	ul    *cnitest.NS
	ulNet netip.Prefix
	nodes []*node
}

type node struct {
	c        *cluster
	ns       *cnitest.NS
	name     string
	uplink   string // the node's end of its underlay veth
	underlay netip.Addr
	block    netip.Prefix // IPv4 container block
	block6   netip.Prefix // IPv6 container block
	gw, gw6  netip.Addr   // the zone bridge's addresses in the blocks
	cfg      overlay.Config
	dev      overlay.Device
	ctrs     []*ctr
}

type ctr struct {
	ns  *cnitest.NS
	ip  netip.Addr
	ip6 netip.Addr
}

// newCluster builds len(ctrs) nodes, node i with ctrs[i] containers, runs
// Ensure on each and wires the containers with the device's MTU. It does
// not Reconcile: tests decide the peer lists.
func newCluster(t *testing.T, ctrs ...int) *cluster {
	t.Helper()
	cnitest.RequireRoot(t)
	c := &cluster{t: t, ul: cnitest.NewNS(t, "znt-ovul"), ulNet: cnitest.Subnet4(t)}
	zone, zone6 := cnitest.Subnet4(t), cnitest.Subnet6(t)
	br := cnitest.Unique(t, "zub")
	c.do(c.ul, func(h *netlink.Handle) error { return addBridge(h, br, "", 0) })
	for i, nctr := range ctrs {
		n := &node{c: c, ns: cnitest.NewNS(t, "znt-ovnode"), name: cnitest.Unique(t, "node"),
			underlay: cnitest.Nth(c.ulNet, i+1)}
		n.block = netip.PrefixFrom(cnitest.Nth(zone, 64*i), 26)
		b6 := zone6.Addr().As16()
		b6[9] = byte(i + 1)
		n.block6 = netip.PrefixFrom(netip.AddrFrom16(b6), 80)
		c.nodes = append(c.nodes, n)
		n.uplink = c.plug(n.ns, br, netip.PrefixFrom(n.underlay, 24))
		n.sysctl("net/ipv4/ip_forward", "1")
		n.sysctl("net/ipv6/conf/all/forwarding", "1")
		n.cfg = overlay.Config{Device: cnitest.Unique(t, "znv"), Underlay: n.underlay, NodeName: n.name}
		if _, err := n.ensure(); err != nil {
			t.Fatalf("Ensure on %s: %v", n.name, err)
		}
		zbr := cnitest.Unique(t, "zzb")
		gw, gw6 := cnitest.Nth(n.block, 1), n.block6.Addr().Next()
		n.gw, n.gw6 = gw, gw6
		c.do(n.ns, func(h *netlink.Handle) error {
			if err := addBridge(h, zbr, netip.PrefixFrom(gw, 26).String(), n.dev.MTU); err != nil {
				return err
			}
			return addAddr(h, zbr, netip.PrefixFrom(gw6, 80))
		})
		for j := 0; j < nctr; j++ {
			x := &ctr{ns: cnitest.NewNS(t, "znt-ovctr"), ip: cnitest.Nth(n.block, 2+j), ip6: addN(gw6, 1+j)}
			n.ctrs = append(n.ctrs, x)
			c.wireCtr(n, zbr, x, gw, gw6)
		}
	}
	return c
}

func addN(a netip.Addr, n int) netip.Addr {
	for ; n > 0; n-- {
		a = a.Next()
	}
	return a
}

func (c *cluster) do(ns *cnitest.NS, fn func(h *netlink.Handle) error) {
	c.t.Helper()
	if err := ns.WithHandle(fn); err != nil {
		c.t.Fatalf("in %s: %v", ns.Name, err)
	}
}

func addBridge(h *netlink.Handle, name, cidr string, mtu int) error {
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}); err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if cidr != "" {
		if err := addAddr(h, name, netip.MustParsePrefix(cidr)); err != nil {
			return err
		}
	}
	return setUp(h, name)
}

func addAddr(h *netlink.Handle, link string, p netip.Prefix) error {
	l, err := h.LinkByName(link)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, link, err)
	}
	return nil
}

func setUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

// vethInto creates a veth in ns with its peer placed in other, and returns
// the names of both ends.
func (c *cluster) vethInto(ns, other *cnitest.NS, mtu int) (string, string) {
	c.t.Helper()
	a, b := cnitest.Unique(c.t, "zva"), cnitest.Unique(c.t, "zvb")
	oh, err := vnetns.GetFromPath(other.Path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer oh.Close()
	c.do(ns, func(h *netlink.Handle) error {
		return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, MTU: mtu}, PeerName: b, PeerMTU: uint32(mtu), PeerNamespace: netlink.NsFd(int(oh))})
	})
	return a, b
}

// plug connects a node namespace to the underlay bridge and gives it its
// underlay address; it returns the node's end.
func (c *cluster) plug(ns *cnitest.NS, br string, addr netip.Prefix) string {
	c.t.Helper()
	ulEnd, nodeEnd := c.vethInto(c.ul, ns, 1500)
	c.do(c.ul, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ulEnd)
		if err != nil {
			return err
		}
		br, err := h.LinkByName(br)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(l, br); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	c.do(ns, func(h *netlink.Handle) error {
		if err := addAddr(h, nodeEnd, addr); err != nil {
			return err
		}
		return setUp(h, nodeEnd)
	})
	return nodeEnd
}

// wireCtr puts a container on the node's zone bridge with the overlay MTU,
// and default routes via the bridge's gateways.
func (c *cluster) wireCtr(n *node, zbr string, x *ctr, gw, gw6 netip.Addr) {
	c.t.Helper()
	hostEnd, ctrEnd := c.vethInto(n.ns, x.ns, n.dev.MTU)
	c.do(n.ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(hostEnd)
		if err != nil {
			return err
		}
		br, err := h.LinkByName(zbr)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(l, br); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	c.do(x.ns, func(h *netlink.Handle) error {
		if err := addAddr(h, ctrEnd, netip.PrefixFrom(x.ip, 26)); err != nil {
			return err
		}
		if err := addAddr(h, ctrEnd, netip.PrefixFrom(x.ip6, 80)); err != nil {
			return err
		}
		if err := setUp(h, ctrEnd); err != nil {
			return err
		}
		l, err := h.LinkByName(ctrEnd)
		if err != nil {
			return err
		}
		for _, g := range []netip.Addr{gw, gw6} {
			if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: g.AsSlice()}); err != nil {
				return fmt.Errorf("default via %s: %w", g, err)
			}
		}
		return nil
	})
}

func (n *node) sysctl(key, val string) {
	n.c.t.Helper()
	err := n.ns.Do(func() error { return os.WriteFile("/proc/sys/"+key, []byte(val), 0o644) })
	if err != nil {
		n.c.t.Fatalf("sysctl %s in %s: %v", key, n.ns.Name, err)
	}
}

// ensure runs overlay.Ensure inside the node and records the device.
func (n *node) ensure() (overlay.Changes, error) {
	var ch overlay.Changes
	err := n.ns.Do(func() error {
		var err error
		n.dev, ch, err = overlay.Ensure(n.cfg)
		return err
	})
	return ch, err
}

// reconcile runs overlay.Reconcile inside the node.
func (n *node) reconcile(peers []overlay.Peer) (overlay.Changes, error) {
	var ch overlay.Changes
	err := n.ns.Do(func() error {
		var err error
		ch, err = overlay.Reconcile(n.cfg, peers)
		return err
	})
	return ch, err
}

func (n *node) mustReconcile(peers []overlay.Peer) overlay.Changes {
	n.c.t.Helper()
	ch, err := n.reconcile(peers)
	if err != nil {
		n.c.t.Fatalf("Reconcile on %s: %v", n.name, err)
	}
	return ch
}

// peer is the node as its peers see it.
func (n *node) peer() overlay.Peer {
	return overlay.Peer{Name: n.name, Underlay: n.underlay, VTEPMAC: n.dev.MAC,
		Blocks: []netip.Prefix{n.block, n.block6}}
}

// peers returns the nodes as peers (this node included: Reconcile skips it).
func (c *cluster) peers(nodes ...*node) []overlay.Peer {
	var out []overlay.Peer
	for _, n := range nodes {
		out = append(out, n.peer())
	}
	return out
}

// serve starts an echo server on every container, tagged with the
// container's address, and returns the addresses to dial (IPv4, IPv6).
func (c *cluster) serve() map[*ctr][2]string {
	out := map[*ctr][2]string{}
	for _, n := range c.nodes {
		for _, x := range n.ctrs {
			a4 := cnitest.EchoTCP(c.t, x.ns, netip.AddrPortFrom(x.ip, 0).String(), tag(x.ip))
			a6 := cnitest.EchoTCP(c.t, x.ns, netip.AddrPortFrom(x.ip6, 0).String(), tag(x.ip6))
			out[x] = [2]string{a4, a6}
		}
	}
	return out
}

// tag names a container's echo server by its address; the echo protocol
// splits on the first colon, so IPv6 colons are replaced.
func tag(a netip.Addr) string { return strings.ReplaceAll(a.String(), ":", "_") }

// reach asserts that a TCP connection from x to every container of the
// given nodes gets its echo back, over IPv4 and IPv6.
func (c *cluster) reach(srv map[*ctr][2]string, x *ctr, to ...*node) {
	c.t.Helper()
	for _, n := range to {
		for _, y := range n.ctrs {
			cnitest.ExpectTCP(c.t, x.ns, srv[y][0], tag(y.ip))
			cnitest.ExpectTCP(c.t, x.ns, srv[y][1], tag(y.ip6))
		}
	}
}

// unreachable asserts that no TCP connection from x reaches a container of
// the given nodes, over either family.
func (c *cluster) unreachable(srv map[*ctr][2]string, x *ctr, to ...*node) {
	c.t.Helper()
	for _, n := range to {
		for _, y := range n.ctrs {
			cnitest.ExpectNoTCP(c.t, x.ns, srv[y][0])
			cnitest.ExpectNoTCP(c.t, x.ns, srv[y][1])
		}
	}
}
