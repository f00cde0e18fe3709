package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Reconcile makes the kernel of the calling thread's namespace hold, on the
// device Ensure made, exactly the entries the peers need (see the package
// comment): what is missing is added, what differs is rewritten, and
// entries of peers that are gone are removed, FDB and neighbour entries on
// the device and routes tagged RouteProtocol only. It compares first, so a
// Reconcile with the input of the last one returns no Changes.
//
// A peer named cfg.NodeName is this node and is skipped, so the daemon can
// pass its whole node list. A peer that is invalid or conflicts with one
// sorting before it by name (same underlay address, VTEP MAC or block) is
// not programmed, and is reported in the error; the others are programmed
// all the same, so one bad record cannot cut a node off from the rest.
// Calls must not run concurrently for the same device.
func Reconcile(cfg Config, peers []Peer) (Changes, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p, perr := planFor(cfg, peers)
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	vx, err := lookupVxlan(h, cfg.Device)
	if err != nil {
		return nil, err
	}
	if vx == nil {
		return nil, fmt.Errorf("overlay: device %s does not exist (Ensure makes it)", cfg.Device)
	}
	k, err := readKernel(h, vx.Attrs().Index)
	if err != nil {
		return nil, err
	}
	w := &writer{h: h}
	err = w.apply(vx.Attrs().Index, p, k)
	members, serr := w.ensurePeerSet(cfg.PeerSet)
	if serr == nil {
		serr = w.syncPeerSet(cfg.PeerSet, p.members, members)
	}
	return w.changes, errors.Join(perr, err, serr)
}

// plan is what the kernel should hold for a list of peers.
type plan struct {
	fdb     map[fdbKey]bool
	neighs  map[netip.Addr]net.HardwareAddr // gateway → VTEP MAC
	routes  map[netip.Prefix]netip.Addr     // block → gateway
	members map[netip.Addr]bool
	// src4, src6 are the routes' preferred sources (invalid: none).
	src4, src6 netip.Addr
}

// src is the preferred source of a route via gw.
func (p plan) src(gw netip.Addr) netip.Addr {
	if gw.Is4() {
		return p.src4
	}
	return p.src6
}

type fdbKey struct {
	mac string // net.HardwareAddr.String()
	dst netip.Addr
}

// planFor turns peers into the entries they need. Invalid or conflicting
// peers are left out and reported.
func planFor(cfg Config, peers []Peer) (plan, error) {
	p := plan{
		fdb:     map[fdbKey]bool{},
		neighs:  map[netip.Addr]net.HardwareAddr{},
		routes:  map[netip.Prefix]netip.Addr{},
		members: map[netip.Addr]bool{},
		src4:    cfg.Source4,
		src6:    cfg.Source6,
	}
	sorted := append([]Peer(nil), peers...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	owner := map[string]string{} // underlay, MAC or block → peer name
	var errs []error
	for _, peer := range sorted {
		if cfg.NodeName != "" && peer.Name == cfg.NodeName {
			continue
		}
		if err := checkPeer(cfg, peer, owner); err != nil {
			errs = append(errs, fmt.Errorf("overlay: peer %q not programmed: %w", peer.Name, err))
			continue
		}
		owner["underlay "+peer.Underlay.String()] = peer.Name
		owner["mac "+peer.VTEPMAC.String()] = peer.Name
		p.fdb[fdbKey{peer.VTEPMAC.String(), peer.Underlay}] = true
		p.members[peer.Underlay] = true
		for _, b := range peer.Blocks {
			owner["block "+b.String()] = peer.Name
			gw := peer.Underlay
			if b.Addr().Is6() {
				gw = Gateway6(peer.Underlay)
			}
			p.neighs[gw] = peer.VTEPMAC
			p.routes[b] = gw
		}
	}
	return p, errors.Join(errs...)
}

// checkPeer validates one peer against cfg and the peers accepted before
// it.
func checkPeer(cfg Config, peer Peer, owner map[string]string) error {
	u := peer.Underlay
	if !u.Is4() || u.IsUnspecified() || u.IsMulticast() || u.IsLoopback() {
		return fmt.Errorf("underlay %q: want a unicast IPv4 address", u)
	}
	if u == cfg.Underlay {
		return fmt.Errorf("underlay %s is this node's", u)
	}
	if err := checkUnicastMAC(peer.VTEPMAC); err != nil {
		return fmt.Errorf("vtep mac: %w", err)
	}
	if bytes.Equal(peer.VTEPMAC, cfg.MAC) {
		return fmt.Errorf("vtep mac %s is this node's", peer.VTEPMAC)
	}
	for _, k := range []string{"underlay " + u.String(), "mac " + peer.VTEPMAC.String()} {
		if o, ok := owner[k]; ok {
			return fmt.Errorf("%s is also peer %q's", k, o)
		}
	}
	seen := map[netip.Prefix]bool{}
	for _, b := range peer.Blocks {
		if !b.IsValid() || b != b.Masked() || b.Bits() == 0 {
			return fmt.Errorf("block %q: want a network prefix, not /0 and no host bits", b)
		}
		if o, ok := owner["block "+b.String()]; ok {
			return fmt.Errorf("block %s is also peer %q's", b, o)
		}
		if seen[b] {
			return fmt.Errorf("block %s listed twice", b)
		}
		seen[b] = true
	}
	return nil
}

// apply makes the device's entries match the plan: stale ones are removed
// first (routes, then neighbours, then FDB, the reverse of the path a
// packet takes), then missing ones are added FDB first, so no route ever
// points at a next hop that cannot be resolved yet. It goes on after a
// failed write and returns every error.
func (w *writer) apply(index int, p plan, k kernelState) error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	keepRoute := map[netip.Prefix]bool{}
	sort.Slice(k.routes, func(i, j int) bool { return prefixOf(k.routes[i].Dst).String() < prefixOf(k.routes[j].Dst).String() })
	for _, r := range k.routes {
		dst := prefixOf(r.Dst)
		if gw, ok := p.routes[dst]; ok && !keepRoute[dst] && routeMatches(r, gw, p.src(gw)) {
			keepRoute[dst] = true
			continue
		}
		r := r
		add(w.do(Del, KindRoute, routeKey(dst, addrOf(r.Gw)), func() error { return w.h.RouteDel(&r) }))
	}

	haveNeigh := map[netip.Addr]bool{}
	sort.Slice(k.neighs, func(i, j int) bool { return addrOf(k.neighs[i].IP).Less(addrOf(k.neighs[j].IP)) })
	for _, n := range k.neighs {
		ip := addrOf(n.IP)
		mac, wanted := p.neighs[ip]
		permanent := n.State&netlink.NUD_PERMANENT != 0
		switch {
		case wanted && permanent && bytes.Equal(n.HardwareAddr, mac):
			haveNeigh[ip] = true
		case wanted:
			// Left for the replace below, which turns it into the
			// entry we want in one write.
		case permanent:
			n := n
			add(w.do(Del, KindNeigh, neighKey(ip, n.HardwareAddr), func() error { return w.h.NeighDel(&n) }))
		}
		// Entries the kernel made itself (failed or stale resolutions)
		// are left to expire: deleting them would only make writes.
	}

	haveFDB := map[fdbKey]bool{}
	sort.Slice(k.fdb, func(i, j int) bool { return fdbLess(k.fdb[i], k.fdb[j]) })
	for _, n := range k.fdb {
		key := fdbKey{n.HardwareAddr.String(), addrOf(n.IP)}
		if p.fdb[key] && n.State&netlink.NUD_PERMANENT != 0 && !haveFDB[key] {
			haveFDB[key] = true
			continue
		}
		n := n
		add(w.do(Del, KindFDB, key.String(), func() error { return w.h.NeighDel(&n) }))
	}

	for _, key := range sortedFDB(p.fdb) {
		if haveFDB[key] {
			continue
		}
		mac, _ := net.ParseMAC(key.mac)
		n := &netlink.Neigh{
			LinkIndex: index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: netlink.NUD_PERMANENT, IP: key.dst.AsSlice(), HardwareAddr: mac,
		}
		add(w.do(Add, KindFDB, key.String(), func() error { return w.h.NeighSet(n) }))
	}

	for _, ip := range sortedAddrs(p.neighs) {
		if haveNeigh[ip] {
			continue
		}
		fam := netlink.FAMILY_V4
		if ip.Is6() {
			fam = netlink.FAMILY_V6
		}
		n := &netlink.Neigh{
			LinkIndex: index, Family: fam, Type: unix.RTN_UNICAST,
			State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: p.neighs[ip],
		}
		add(w.do(Set, KindNeigh, neighKey(ip, p.neighs[ip]), func() error { return w.h.NeighSet(n) }))
	}

	for _, dst := range sortedPrefixes(p.routes) {
		if keepRoute[dst] {
			continue
		}
		gw := p.routes[dst]
		r := &netlink.Route{
			LinkIndex: index, Dst: ipNet(dst), Gw: gw.AsSlice(),
			Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_UNIVERSE,
			Priority: routePriority(gw),
		}
		if src := p.src(gw); src.IsValid() {
			r.Src = src.AsSlice()
		}
		if gw.Is4() {
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		add(w.do(Add, KindRoute, routeKey(dst, gw), func() error { return w.h.RouteAdd(r) }))
	}
	return errors.Join(errs...)
}

// routeMatches reports whether a route this package owns is the one it
// would write for gw and preferred source src.
func routeMatches(r netlink.Route, gw, src netip.Addr) bool {
	return addrOf(r.Gw) == gw && r.Priority == routePriority(gw) && len(r.MultiPath) == 0 && addrOf(r.Src) == src &&
		(gw.Is6() || r.Flags&int(netlink.FLAG_ONLINK) != 0)
}

// routePriority is the metric of the routes written here: the kernel's
// default for the family, which it reports back (IPv6 turns 0 into 1024),
// so that what is read compares equal to what was written.
func routePriority(gw netip.Addr) int {
	if gw.Is6() {
		return 1024
	}
	return 0
}

// syncPeerSet adds missing members to the peer set and removes those of
// peers that are gone.
func (w *writer) syncPeerSet(name string, want, have map[netip.Addr]bool) error {
	var errs []error
	for _, a := range sortedSet(have) {
		if !want[a] {
			e := &netlink.IPSetEntry{IP: a.AsSlice()}
			errs = append(errs, w.do(Del, KindPeerSet, name+" "+a.String(), func() error { return w.h.IpsetDel(name, e) }))
		}
	}
	for _, a := range sortedSet(want) {
		if !have[a] {
			e := &netlink.IPSetEntry{IP: a.AsSlice()}
			errs = append(errs, w.do(Add, KindPeerSet, name+" "+a.String(), func() error { return w.h.IpsetAdd(name, e) }))
		}
	}
	return errors.Join(errs...)
}

func (k fdbKey) String() string { return k.mac + " dst " + k.dst.String() }

func neighKey(ip netip.Addr, mac net.HardwareAddr) string {
	return ip.String() + " lladdr " + mac.String()
}

func routeKey(dst netip.Prefix, gw netip.Addr) string { return dst.String() + " via " + gw.String() }

func fdbLess(a, b netlink.Neigh) bool {
	if c := bytes.Compare(a.HardwareAddr, b.HardwareAddr); c != 0 {
		return c < 0
	}
	return addrOf(a.IP).Less(addrOf(b.IP))
}

func sortedFDB(m map[fdbKey]bool) []fdbKey {
	out := make([]fdbKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func sortedSet(m map[netip.Addr]bool) []netip.Addr { return sortedAddrs(m) }

func sortedPrefixes(m map[netip.Prefix]netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
