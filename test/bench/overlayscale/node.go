//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/overlay"
)

// The simulated node and its fake peers. Every address and MAC is a pure
// function of the peer's index, so two runs program the same entries.

var (
	nodeUnderlay = netip.MustParsePrefix("192.168.77.1/24")
	peerBase     = netip.MustParseAddr("172.16.0.0") // peer i's underlay: 172.16.0.0 + i + 1
	blockBase    = netip.MustParseAddr("10.64.0.0")  // peer i's blocks: /26 number 2i and 2i+1
	uplink       = "ul0"
	nodeName     = "scale-node"
)

// addrPlus returns a + n for an IPv4 address.
func addrPlus(a netip.Addr, n uint32) netip.Addr {
	v := a.As4()
	x := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	x += n
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

// fakePeer is peer number i: its own underlay address, VTEP MAC and two
// /26 blocks, like a node hosting two zones.
func fakePeer(i int) overlay.Peer {
	name := fmt.Sprintf("peer-%04d", i)
	return overlay.Peer{
		Name:     name,
		Underlay: addrPlus(peerBase, uint32(i)+1),
		VTEPMAC:  overlay.DeriveMAC(name),
		Blocks: []netip.Prefix{
			netip.PrefixFrom(addrPlus(blockBase, uint32(2*i)*64), 26),
			netip.PrefixFrom(addrPlus(blockBase, uint32(2*i+1)*64), 26),
		},
	}
}

func fakePeers(n int) []overlay.Peer {
	out := make([]overlay.Peer, n)
	for i := range out {
		out[i] = fakePeer(i)
	}
	return out
}

// node is one fresh namespace playing a node: an uplink holding the
// underlay address, and the overlay device Ensure made.
type node struct {
	name, path string
	cfg        overlay.Config
	dev        overlay.Device
}

// newNode creates the namespace and its uplink. The uplink is a dummy
// link, or a port-less bridge on kernels without the dummy driver: all
// the overlay needs is a local link holding the underlay address (for the
// device's MTU); nothing is sent.
func newNode(name string) (*node, error) {
	path, err := netns.Create(name)
	if err != nil {
		return nil, err
	}
	n := &node{name: name, path: path, cfg: overlay.Config{Underlay: nodeUnderlay.Addr(), NodeName: nodeName}}
	err = n.withHandle(func(h *netlink.Handle) error {
		err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: uplink}})
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: uplink}})
		}
		if err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
		l, err := h.LinkByName(uplink)
		if err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: nodeUnderlay.Addr().AsSlice(), Mask: net.CIDRMask(nodeUnderlay.Bits(), 32)}}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("underlay address: %w", err)
		}
		return h.LinkSetUp(l)
	})
	if err == nil {
		err = netns.Do(path, func() error {
			var err error
			n.dev, _, err = overlay.Ensure(n.cfg)
			return err
		})
	}
	if err != nil {
		_ = netns.Delete(name)
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return n, nil
}

func (n *node) delete() error { return netns.Delete(n.name) }

// reconcile runs overlay.Reconcile inside the node and times the call
// alone.
func (n *node) reconcile(peers []overlay.Peer) (time.Duration, overlay.Changes, error) {
	var took time.Duration
	var ch overlay.Changes
	err := netns.Do(n.path, func() error {
		t0 := time.Now()
		var err error
		ch, err = overlay.Reconcile(n.cfg, peers)
		took = time.Since(t0)
		return err
	})
	return took, ch, err
}

// readSet times one dump of the peer set, on a thread locked inside the
// namespace (where Reconcile runs) and on an ordinary goroutine through a
// handle bound to the namespace. The library parses attributes through a
// channel fed by a goroutine; on a locked thread every hand-off switches
// OS threads, which is most of what an unchanged Reconcile costs.
func (n *node) readSet() (locked, unlocked time.Duration, err error) {
	err = netns.Do(n.path, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		t0 := time.Now()
		_, err = h.IpsetList(overlay.DefaultPeerSet)
		locked = time.Since(t0)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	err = n.withHandle(func(h *netlink.Handle) error {
		t0 := time.Now()
		_, err := h.IpsetList(overlay.DefaultPeerSet)
		unlocked = time.Since(t0)
		return err
	})
	return locked, unlocked, err
}

func (n *node) withHandle(fn func(h *netlink.Handle) error) error {
	nsh, err := vnetns.GetFromPath(n.path)
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

// entries is what the kernel holds on the node's overlay device, each
// entry rendered as text, sorted: read with netlink here, not through the
// overlay package, so the package's own view is not what checks it.
type entries struct{ fdb, neighs, routes, members []string }

func (e entries) String() string {
	return fmt.Sprintf("fdb %d, neigh %d, route %d, set %d", len(e.fdb), len(e.neighs), len(e.routes), len(e.members))
}

func (n *node) kernel() (entries, error) {
	var e entries
	idx := n.dev.Index
	err := n.withHandle(func(h *netlink.Handle) error {
		fdb, err := retry(func() ([]netlink.Neigh, error) { return h.NeighList(idx, unix.AF_BRIDGE) })
		if err != nil {
			return fmt.Errorf("fdb: %w", err)
		}
		for _, x := range fdb {
			if x.LinkIndex == idx && x.IP != nil && x.State&netlink.NUD_PERMANENT != 0 {
				e.fdb = append(e.fdb, x.HardwareAddr.String()+" "+x.IP.String())
			}
		}
		ns, err := retry(func() ([]netlink.Neigh, error) { return h.NeighList(idx, unix.AF_INET) })
		if err != nil {
			return fmt.Errorf("neighbours: %w", err)
		}
		for _, x := range ns {
			if x.LinkIndex == idx && x.State&netlink.NUD_PERMANENT != 0 {
				e.neighs = append(e.neighs, x.IP.String()+" "+x.HardwareAddr.String())
			}
		}
		filter := &netlink.Route{LinkIndex: idx, Protocol: overlay.RouteProtocol}
		rs, err := retry(func() ([]netlink.Route, error) {
			return h.RouteListFiltered(unix.AF_INET, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
		})
		if err != nil {
			return fmt.Errorf("routes: %w", err)
		}
		for _, r := range rs {
			e.routes = append(e.routes, r.Dst.String()+" "+r.Gw.String())
		}
		set, err := h.IpsetList(overlay.DefaultPeerSet)
		if err != nil {
			return fmt.Errorf("peer set: %w", err)
		}
		for _, m := range set.Entries {
			e.members = append(e.members, m.IP.String())
		}
		return nil
	})
	e.sort()
	return e, err
}

func (e *entries) sort() {
	for _, s := range [][]string{e.fdb, e.neighs, e.routes, e.members} {
		slices.Sort(s)
	}
}

// expect is what the kernel should hold for peers.
func expect(peers []overlay.Peer) entries {
	var e entries
	for _, p := range peers {
		e.fdb = append(e.fdb, p.VTEPMAC.String()+" "+p.Underlay.String())
		e.neighs = append(e.neighs, p.Underlay.String()+" "+p.VTEPMAC.String())
		e.members = append(e.members, p.Underlay.String())
		for _, b := range p.Blocks {
			e.routes = append(e.routes, b.String()+" "+p.Underlay.String())
		}
	}
	e.sort()
	return e
}

// diff says how got differs from want, or "" when they are equal.
func diff(got, want entries) string {
	var out []string
	for _, k := range []struct {
		what      string
		got, want []string
	}{{"fdb", got.fdb, want.fdb}, {"neigh", got.neighs, want.neighs}, {"route", got.routes, want.routes}, {"set", got.members, want.members}} {
		if !slices.Equal(k.got, k.want) {
			out = append(out, fmt.Sprintf("%s: %d entries, want %d", k.what, len(k.got), len(k.want)))
			for _, w := range k.want {
				if !slices.Contains(k.got, w) {
					out = append(out, fmt.Sprintf("  missing %s %s", k.what, w))
					break
				}
			}
		}
	}
	return strings.Join(out, "; ")
}

func retry[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 10; i++ {
		if v, err = fn(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return v, err
}
