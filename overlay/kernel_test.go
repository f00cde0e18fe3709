//go:build linux

package overlay_test

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/overlay"
)

// Readers of what a simulated node's kernel holds, independent of the
// package's own Snapshot.
// entries reads, straight from the node's kernel, what the overlay device
// carries and the routes of the overlay's protocol, as sorted lines.
func (n *node) entries() []string {
	n.c.t.Helper()
	var out []string
	n.c.do(n.ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(n.cfg.Device)
		if err != nil {
			return err
		}
		idx := l.Attrs().Index
		fdb, err := h.NeighList(idx, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		for _, e := range fdb {
			if e.LinkIndex == idx && e.IP != nil {
				out = append(out, fmt.Sprintf("fdb %s dst %s state %#x", e.HardwareAddr, e.IP, e.State))
			}
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			ns, err := h.NeighList(idx, fam)
			if err != nil {
				return err
			}
			for _, e := range ns {
				if e.State == netlink.NUD_PERMANENT {
					out = append(out, fmt.Sprintf("neigh %s lladdr %s", e.IP, e.HardwareAddr))
				}
			}
			rs, err := h.RouteList(nil, fam)
			if err != nil {
				return err
			}
			for _, r := range rs {
				if r.Protocol == overlay.RouteProtocol {
					if r.LinkIndex != idx {
						return fmt.Errorf("route %s of the overlay's protocol on link #%d", r.Dst, r.LinkIndex)
					}
					l := fmt.Sprintf("route %s via %s onlink=%v", r.Dst, r.Gw, r.Flags&int(netlink.FLAG_ONLINK) != 0)
					if r.Src != nil {
						l += " src " + r.Src.String()
					}
					out = append(out, l)
				}
			}
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// want is what a node should hold for the given peers, written out
// independently of the package's own planning.
func want(peers ...*node) []string {
	var out []string
	for _, p := range peers {
		ll := overlay.Gateway6(p.underlay)
		out = append(out,
			fmt.Sprintf("fdb %s dst %s state %#x", p.dev.MAC, p.underlay, netlink.NUD_PERMANENT),
			fmt.Sprintf("neigh %s lladdr %s", p.underlay, p.dev.MAC),
			fmt.Sprintf("neigh %s lladdr %s", ll, p.dev.MAC),
			fmt.Sprintf("route %s via %s onlink=true", p.block, p.underlay),
			fmt.Sprintf("route %s via %s onlink=false", p.block6, ll))
	}
	sort.Strings(out)
	return out
}

func (n *node) expectEntries(peers ...*node) {
	n.c.t.Helper()
	got, w := n.entries(), want(peers...)
	if strings.Join(got, "\n") != strings.Join(w, "\n") {
		n.c.t.Fatalf("%s holds:\n  %s\nwant:\n  %s", n.name, strings.Join(got, "\n  "), strings.Join(w, "\n  "))
	}
}

// quiet watches the node's link, neighbour (FDB included) and route
// notifications about the overlay device while fn runs, and fails the
// test if the kernel reported any: the proof that fn wrote nothing.
func (n *node) quiet(fn func()) {
	n.c.t.Helper()
	h, err := vnetns.GetFromPath(n.ns.Path)
	if err != nil {
		n.c.t.Fatal(err)
	}
	defer h.Close()
	done := make(chan struct{})
	links, neighs, routes := make(chan netlink.LinkUpdate, 64), make(chan netlink.NeighUpdate, 64), make(chan netlink.RouteUpdate, 64)
	if err := netlink.LinkSubscribeAt(h, links, done); err != nil {
		n.c.t.Fatal(err)
	}
	if err := netlink.NeighSubscribeAt(h, neighs, done); err != nil {
		n.c.t.Fatal(err)
	}
	if err := netlink.RouteSubscribeAt(h, routes, done); err != nil {
		n.c.t.Fatal(err)
	}
	fn()
	var seen []string
	deadline := time.After(300 * time.Millisecond)
	for wait := true; wait; {
		select {
		case u := <-links:
			if u.Attrs().Index == n.dev.Index {
				seen = append(seen, fmt.Sprintf("link %d %s", u.Header.Type, u.Attrs().Name))
			}
		case u := <-neighs:
			if u.LinkIndex == n.dev.Index {
				seen = append(seen, fmt.Sprintf("neigh %d %s %s", u.Type, u.IP, u.HardwareAddr))
			}
		case u := <-routes:
			if u.LinkIndex == n.dev.Index {
				seen = append(seen, fmt.Sprintf("route %d %s", u.Type, u.Dst))
			}
		case <-deadline:
			wait = false
		}
	}
	close(done)
	if len(seen) > 0 {
		n.c.t.Fatalf("%s: the kernel reported changes to the overlay device: %s", n.name, strings.Join(seen, "; "))
	}
}
