package acl

// Connections that a new policy forbids.
//
// Every top-level chain accepts RELATED,ESTABLISHED first, so replacing a
// network's rules changes the verdict of new connections only: a connection
// the old policy let in keeps going under the new one for as long as
// conntrack remembers it. FlushForbidden, run right after the new rules are
// committed, deletes the conntrack entries of the connections the new
// policy does not allow. The next packet of such a connection then finds no
// entry, is tracked as new (nf_conntrack_tcp_loose picks TCP up mid-stream)
// and is judged, and dropped, by the new rules.
//
// Why after the commit and not before: a packet that slips in between the
// deletion and the commit would be judged by the old rules, which allowed
// it, and would put the entry back.
//
// Why only the forbidden entries: deleting the entry of an allowed
// connection is not free. Its next packet may travel in the reply
// direction, and would then be judged as a new connection from the server
// to the client, which the policy usually forbids; NAT mappings are also
// rebuilt from scratch. So an entry is deleted only when the policy is
// certain to forbid its connection.

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/conf"
)

// ConntrackTable is the connection tracking table of the current network
// namespace and the addresses that make the namespace the host. The real
// one is KernelConntrack; acltest has an in-memory one.
type ConntrackTable interface {
	// LocalAddrs are the namespace's own addresses (interface and
	// broadcast addresses): a connection from or to one of them is the
	// host's, judged by the policy's host rules.
	LocalAddrs() ([]netip.Addr, error)
	// Delete deletes every entry of the family that filter matches and
	// returns how many it deleted.
	Delete(f Family, filter netlink.CustomConntrackFilter) (int, error)
}

// FlushForbidden deletes the conntrack entries of the connections the
// policy p does not allow and that touch one of its zones, in both
// families, and returns how many it deleted. Call it after p's rules are
// installed (ApplyFilter). A family none of p's zones uses is not dumped:
// no connection of that family touches a zone.
func FlushForbidden(t ConntrackTable, p *conf.Policy) (int, error) {
	if p == nil {
		return 0, nil
	}
	local, err := t.LocalAddrs()
	if err != nil {
		return 0, fmt.Errorf("conntrack: host addresses: %w", err)
	}
	filter := NewForbiddenFilter(p, local)
	total := 0
	var errs []error
	for _, f := range []Family{IPv4, IPv6} {
		if len(zoneSubnets(p, f)) == 0 {
			continue
		}
		n, err := t.Delete(f, filter)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("conntrack: delete IPv%d connections the policy forbids: %w", f, err))
		}
	}
	return total, errors.Join(errs...)
}

// ForbiddenFilter matches the conntrack entries whose connection touches a
// zone of the policy and is not allowed by it. It implements netlink's
// CustomConntrackFilter.
type ForbiddenFilter struct {
	p     *conf.Policy
	local map[netip.Addr]bool
	// edges are the ports where a verdict can change: 0, and the start
	// and one past the end of every port range in the rules. They stand
	// for every port when an entry's ports are unknown.
	edges []uint16
}

// NewForbiddenFilter is the filter of policy p on a host whose own
// addresses are local.
func NewForbiddenFilter(p *conf.Policy, local []netip.Addr) *ForbiddenFilter {
	m := &ForbiddenFilter{p: p, local: map[netip.Addr]bool{}}
	for _, a := range local {
		m.local[a.Unmap()] = true
	}
	seen := map[uint16]bool{0: true}
	m.edges = []uint16{0}
	add := func(port int) {
		if port <= 0xffff && !seen[uint16(port)] {
			seen[uint16(port)] = true
			m.edges = append(m.edges, uint16(port))
		}
	}
	for _, r := range p.Rules {
		for _, e := range append(append([]conf.Endpoint(nil), r.Sources...), r.Destinations...) {
			for _, pr := range e.Ports {
				add(int(pr.First))
				add(int(pr.Last) + 1)
			}
		}
	}
	return m
}

// MatchConntrackFlow reports whether the entry's connection is one the
// policy forbids.
func (m *ForbiddenFilter) MatchConntrackFlow(ct *netlink.ConntrackFlow) bool {
	f, portsKnown, ok := m.flowOf(ct)
	if !ok {
		return false
	}
	if portsKnown {
		allowed, _ := m.p.Allows(f)
		return !allowed
	}
	// The verdict only changes at an edge, so trying every pair of edges
	// tries every port pair there is.
	for _, sp := range m.edges {
		for _, dp := range m.edges {
			f.SrcPort, f.DstPort = sp, dp
			if allowed, _ := m.p.Allows(f); allowed {
				return false
			}
		}
	}
	return true
}

// flowOf is the connection an entry tracks, as the policy judges it. The
// source is the original direction's source, as the first packet left its
// sender (source NAT rewrites it later, on the way out). The destination is
// the reply direction's source: after destination NAT, that is the
// container and its port a published port leads to, and without NAT it is
// the original destination. portsKnown is false for protocols with ports
// that netlink does not decode (SCTP): their ports read as zero.
func (m *ForbiddenFilter) flowOf(ct *netlink.ConntrackFlow) (f conf.Flow, portsKnown, ok bool) {
	src, ok1 := netip.AddrFromSlice(ct.Forward.SrcIP)
	dst, ok2 := netip.AddrFromSlice(ct.Reverse.SrcIP)
	if !ok1 || !ok2 {
		return conf.Flow{}, false, false
	}
	src, dst = src.Unmap(), dst.Unmap()
	f = conf.Flow{
		Src: src, Dst: dst,
		SrcHost: m.isLocal(src), DstHost: m.isLocal(dst),
	}
	switch ct.Forward.Protocol {
	case unix.IPPROTO_TCP:
		f.Proto = conf.ProtoTCP
		f.SrcPort, f.DstPort = ct.Forward.SrcPort, ct.Reverse.SrcPort
	case unix.IPPROTO_UDP:
		f.Proto = conf.ProtoUDP
		f.SrcPort, f.DstPort = ct.Forward.SrcPort, ct.Reverse.SrcPort
	case unix.IPPROTO_SCTP:
		f.Proto = conf.ProtoSCTP
		return f, false, true
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		f.Proto = conf.ProtoICMP
	default:
		// A protocol the policy cannot name: only rules on protocol
		// "all" without ports match it, as in the rendered rules.
		f.Proto = conf.Protocol("ipproto-" + strconv.Itoa(int(ct.Forward.Protocol)))
	}
	return f, true, true
}

// isLocal reports whether a is the host: one of its addresses, loopback,
// or a multicast or limited broadcast address, which the host receives
// itself rather than forwards.
func (m *ForbiddenFilter) isLocal(a netip.Addr) bool {
	return m.local[a] || a.IsLoopback() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// KernelConntrack is the kernel's connection tracking table of the
// current network namespace, over netlink.
type KernelConntrack struct{}

// LocalAddrs implements ConntrackTable.
func (KernelConntrack) LocalAddrs() ([]netip.Addr, error) {
	addrs, err := netlinksafe.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
		if ip, ok := netip.AddrFromSlice(a.Broadcast); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// conntrackDumpTries bounds the dumps of one Delete when the table keeps
// changing under the dump.
const conntrackDumpTries = 5

// Delete implements ConntrackTable. netlink deletes what it did read of an
// interrupted dump; the dump is then run again for what it missed, and the
// deletions of every round are counted.
func (KernelConntrack) Delete(f Family, filter netlink.CustomConntrackFilter) (int, error) {
	fam := netlink.InetFamily(unix.AF_INET)
	if f == IPv6 {
		fam = netlink.InetFamily(unix.AF_INET6)
	}
	total := 0
	var err error
	for range conntrackDumpTries {
		var n uint
		n, err = netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filter)
		total += int(n)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return total, err
}
