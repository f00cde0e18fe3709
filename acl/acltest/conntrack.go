package acltest

import (
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/acl"
)

// Conntrack is an in-memory connection tracking table: Delete removes the
// entries of the family that the filter matches, as the kernel's does.
type Conntrack struct {
	mu      sync.Mutex
	Local   []netip.Addr
	Entries []*netlink.ConntrackFlow
	// Dumps counts the Delete calls, one per family dumped.
	Dumps int
}

// LocalAddrs implements acl.ConntrackTable.
func (c *Conntrack) LocalAddrs() ([]netip.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]netip.Addr(nil), c.Local...), nil
}

// Delete implements acl.ConntrackTable.
func (c *Conntrack) Delete(f acl.Family, filter netlink.CustomConntrackFilter) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Dumps++
	fam := uint8(unix.AF_INET)
	if f == acl.IPv6 {
		fam = unix.AF_INET6
	}
	kept := c.Entries[:0]
	n := 0
	for _, e := range c.Entries {
		if e.FamilyType == fam && filter.MatchConntrackFlow(e) {
			n++
			continue
		}
		kept = append(kept, e)
	}
	c.Entries = kept
	return n, nil
}

// Entry is a conntrack entry of a connection from src to dst (netip
// "addr:port" forms; the port is ignored for protocols without ports),
// whose replies come from replySrc and go to replyDst: for a connection
// without NAT, dst and src.
func Entry(proto uint8, src, dst, replySrc, replyDst string) *netlink.ConntrackFlow {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	rs, rd := netip.MustParseAddrPort(replySrc), netip.MustParseAddrPort(replyDst)
	fam := uint8(unix.AF_INET)
	if s.Addr().Is6() {
		fam = unix.AF_INET6
	}
	tuple := func(a, b netip.AddrPort) netlink.IPTuple {
		t := netlink.IPTuple{Protocol: proto, SrcIP: a.Addr().AsSlice(), DstIP: b.Addr().AsSlice()}
		// netlink decodes the ports of TCP and UDP only.
		if proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP {
			t.SrcPort, t.DstPort = a.Port(), b.Port()
		}
		return t
	}
	return &netlink.ConntrackFlow{FamilyType: fam, Forward: tuple(s, d), Reverse: tuple(rs, rd)}
}
