package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// State is what the kernel holds of the overlay: the device, the entries on
// it, the routes this package owns, and the peer set.
type State struct {
	Device        *Device // nil when there is no device
	FDB           []FDBEntry
	Neighs        []NeighEntry
	Routes        []RouteEntry
	PeerSetExists bool
	PeerSet       []netip.Addr
}

// FDBEntry is a forwarding entry of the VXLAN device: frames for MAC are
// sent to Dst.
type FDBEntry struct {
	MAC       net.HardwareAddr
	Dst       netip.Addr
	Permanent bool
}

// NeighEntry is a neighbour entry of the VXLAN device.
type NeighEntry struct {
	IP        netip.Addr
	MAC       net.HardwareAddr
	Permanent bool
}

// RouteEntry is a route this package owns (RouteProtocol, main table, out
// of the VXLAN device).
type RouteEntry struct {
	Dst    netip.Prefix
	Gw     netip.Addr
	Src    netip.Addr // preferred source; invalid when none
	OnLink bool
}

// Snapshot reads what the kernel of the calling thread's namespace holds of
// the overlay cfg describes (only Device and PeerSet are used). A missing
// device or set is not an error: State says so.
func Snapshot(cfg Config) (State, error) {
	cfg = cfg.withDefaults()
	h, err := newHandle()
	if err != nil {
		return State{}, err
	}
	defer h.Close()
	var st State
	vx, err := lookupVxlan(h, cfg.Device)
	if err != nil {
		return State{}, err
	}
	if vx != nil {
		d := deviceOf(vx)
		st.Device = &d
		k, err := readKernel(h, d.Index)
		if err != nil {
			return State{}, err
		}
		for _, n := range k.fdb {
			st.FDB = append(st.FDB, FDBEntry{MAC: n.HardwareAddr, Dst: addrOf(n.IP), Permanent: n.State&netlink.NUD_PERMANENT != 0})
		}
		for _, n := range k.neighs {
			st.Neighs = append(st.Neighs, NeighEntry{IP: addrOf(n.IP), MAC: n.HardwareAddr, Permanent: n.State&netlink.NUD_PERMANENT != 0})
		}
		for _, r := range k.routes {
			st.Routes = append(st.Routes, RouteEntry{Dst: prefixOf(r.Dst), Gw: addrOf(r.Gw), Src: addrOf(r.Src), OnLink: r.Flags&int(netlink.FLAG_ONLINK) != 0})
		}
	}
	members, exists, err := readPeerSet(h, cfg.PeerSet)
	if err != nil {
		return State{}, err
	}
	st.PeerSetExists = exists
	for a := range members {
		st.PeerSet = append(st.PeerSet, a)
	}
	sort.Slice(st.PeerSet, func(i, j int) bool { return st.PeerSet[i].Less(st.PeerSet[j]) })
	return st, nil
}

// kernelState is what Reconcile compares with: the raw netlink objects, so
// a stale one can be deleted exactly as the kernel reported it.
type kernelState struct {
	fdb    []netlink.Neigh
	neighs []netlink.Neigh
	routes []netlink.Route
}

func readKernel(h *netlink.Handle, index int) (kernelState, error) {
	var k kernelState
	fdb, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(index, unix.AF_BRIDGE) })
	if err != nil {
		return k, fmt.Errorf("overlay: list fdb: %w", err)
	}
	for _, n := range fdb {
		// A VXLAN device lists its remote entries with their
		// destination; anything without one is not a unicast remote.
		if n.LinkIndex == index && n.IP != nil {
			k.fdb = append(k.fdb, n)
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(index, fam) })
		if err != nil {
			return k, fmt.Errorf("overlay: list neighbours: %w", err)
		}
		for _, n := range ns {
			// NOARP entries are the kernel's own multicast mappings
			// (ff02::1 and the like), nothing a peer needs.
			if n.LinkIndex == index && n.State&netlink.NUD_NOARP == 0 {
				k.neighs = append(k.neighs, n)
			}
		}
		filter := &netlink.Route{LinkIndex: index, Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
		rs, err := dump(func() ([]netlink.Route, error) {
			return h.RouteListFiltered(fam, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return k, fmt.Errorf("overlay: list routes: %w", err)
		}
		k.routes = append(k.routes, rs...)
	}
	return k, nil
}

// readPeerSet returns the members of the peer set, and whether it exists.
func readPeerSet(h *netlink.Handle, name string) (map[netip.Addr]bool, bool, error) {
	res, err := h.IpsetList(name)
	if errors.Is(err, unix.ENOENT) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("overlay: list ipset %s: %w", name, err)
	}
	if res.TypeName != "hash:ip" || res.Family != unix.AF_INET {
		return nil, true, fmt.Errorf("overlay: ipset %s exists as %s family %d, want hash:ip inet; not touching it", name, res.TypeName, res.Family)
	}
	members := make(map[netip.Addr]bool, len(res.Entries))
	for _, e := range res.Entries {
		members[addrOf(e.IP)] = true
	}
	return members, true, nil
}

// ensurePeerSet creates the peer set when it is missing and returns its
// members.
func (w *writer) ensurePeerSet(name string) (map[netip.Addr]bool, error) {
	members, exists, err := readPeerSet(w.h, name)
	if err != nil || exists {
		return members, err
	}
	err = w.do(Add, KindPeerSet, name, func() error {
		return w.h.IpsetCreate(name, "hash:ip", netlink.IpsetCreateOptions{Family: unix.AF_INET})
	})
	return map[netip.Addr]bool{}, err
}
