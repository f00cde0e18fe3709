//go:build linux

package cnitest

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// Readers of what the kernel holds inside a test namespace.

// handle opens a netlink socket inside the namespace.
func (n *NS) handle() (*netlink.Handle, error) {
	h, err := vnetns.GetFromPath(n.Path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", n.Path, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Path, err)
	}
	return nh, nil
}

// WithHandle runs fn with a netlink handle inside the namespace.
func (n *NS) WithHandle(fn func(h *netlink.Handle) error) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Delete()
	return fn(h)
}

// retryDump repeats a netlink dump the kernel interrupted (the table
// changed while it was read, which happens while other tests run).
func retryDump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 10; i++ {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return v, err
}

// Links lists the links of the namespace.
func (n *NS) Links(t testing.TB) []netlink.Link {
	t.Helper()
	var links []netlink.Link
	err := n.WithHandle(func(h *netlink.Handle) error {
		var err error
		links, err = retryDump(h.LinkList)
		return err
	})
	if err != nil {
		t.Fatalf("list links in %s: %v", n, err)
	}
	return links
}

// LinkByName returns the link or an error (netlink.LinkNotFoundError when
// it does not exist).
func (n *NS) LinkByName(name string) (netlink.Link, error) {
	var l netlink.Link
	err := n.WithHandle(func(h *netlink.Handle) error {
		var err error
		l, err = h.LinkByName(name)
		return err
	})
	return l, err
}

// HasLink reports whether a link of that name exists.
func (n *NS) HasLink(t testing.TB, name string) bool {
	t.Helper()
	_, err := n.LinkByName(name)
	if err == nil {
		return true
	}
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return false
	}
	t.Fatalf("look up %s in %s: %v", name, n, err)
	return false
}

// Link returns the named link and fails the test if it is missing.
func (n *NS) Link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := n.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, n, err)
	}
	return l
}

// LinkByIndex returns the link with that index.
func (n *NS) LinkByIndex(t testing.TB, idx int) netlink.Link {
	t.Helper()
	var l netlink.Link
	err := n.WithHandle(func(h *netlink.Handle) error {
		var err error
		l, err = h.LinkByIndex(idx)
		return err
	})
	if err != nil {
		t.Fatalf("link #%d in %s: %v", idx, n, err)
	}
	return l
}

// Addrs returns the global-scope addresses of the named link in the family
// (netlink.FAMILY_V4, FAMILY_V6 or FAMILY_ALL); IPv6 link-local addresses
// are left out.
func (n *NS) Addrs(t testing.TB, link string, family int) []netlink.Addr {
	t.Helper()
	var out []netlink.Addr
	err := n.WithHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(link)
		if err != nil {
			return err
		}
		addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, family) })
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() {
				continue
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("addresses of %s in %s: %v", link, n, err)
	}
	return out
}

// Prefixes returns Addrs as netip prefixes (address with its prefix length).
func (n *NS) Prefixes(t testing.TB, link string, family int) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, a := range n.Addrs(t, link, family) {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out
}

// Routes lists the main-table routes of the family.
func (n *NS) Routes(t testing.TB, family int) []netlink.Route {
	t.Helper()
	var routes []netlink.Route
	err := n.WithHandle(func(h *netlink.Handle) error {
		var err error
		routes, err = retryDump(func() ([]netlink.Route, error) { return h.RouteList(nil, family) })
		return err
	})
	if err != nil {
		t.Fatalf("routes in %s: %v", n, err)
	}
	return routes
}

// DefaultRoute returns the gateway of the default route of the family, and
// the index of its link; ok is false when there is none.
func (n *NS) DefaultRoute(t testing.TB, family int) (gw netip.Addr, linkIndex int, ok bool) {
	t.Helper()
	for _, r := range n.Routes(t, family) {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		g, _ := netip.AddrFromSlice(r.Gw)
		return g.Unmap(), r.LinkIndex, true
	}
	return netip.Addr{}, 0, false
}
