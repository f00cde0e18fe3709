// Package overlay programs one node's side of the routed, unicast VXLAN
// overlay: the VXLAN device, and for every remote node the kernel entries
// that carry traffic to that node's container address blocks. It talks to
// the kernel only (no store, no daemon): given this node's Config and the
// list of remote peers, Ensure and Reconcile make the current network
// namespace hold exactly what it should, and write nothing when it already
// does.
//
// # Design
//
// One VXLAN device per node, learning off, no multicast group: nothing is
// flooded and nothing is learned, every forwarding decision is a static
// entry written here. A packet for a remote container goes
//
//	route  block via GW dev zn-vxlan onlink      (which peer)
//	neigh  GW lladdr PEER-VTEP-MAC permanent     (which inner MAC)
//	fdb    PEER-VTEP-MAC dst PEER-UNDERLAY self permanent  (which outer IP)
//
// GW, the per-peer next hop, is the peer's underlay IPv4 address for IPv4
// blocks, and for IPv6 blocks the link-local address fe80::<underlay> (see
// Gateway6). Both are unique per peer, need no address plan of their own,
// and depend on the underlay address only, so a peer whose VTEP MAC changes
// gets its FDB and neighbour entries rewritten while its routes stay put.
// Neighbour entries are per device, so the underlay address as a neighbour
// of the VXLAN device never meets its namesake on the underlay link; an
// onlink next hop needs no address on the VXLAN device either.
//
// What each remote node costs, and why:
//   - 1 FDB entry: its VTEP MAC → its underlay IP. The VXLAN driver looks the
//     inner destination MAC up here to pick the outer destination.
//   - 1 neighbour entry per address family it has blocks in (usually 1): the
//     gateway → its VTEP MAC, permanent, so the kernel never sends ARP or NDP
//     into a device that has nowhere to flood them.
//   - 1 route per block it owns (one per zone it hosts containers of):
//     block → gateway, tagged with RouteProtocol so only routes written here
//     are ever deleted here.
//   - 1 member of the peer set (an ipset of underlay addresses) that the ACL
//     uses to accept VXLAN datagrams from known peers only.
//
// So N remote nodes hosting Z zones each cost N FDB entries, N (or 2N with
// IPv6) neighbours, N·Z routes and N set members; nothing grows with the
// number of containers.
//
// Writes are made only after comparing with what the kernel holds. That is
// not only thrift: setting a VXLAN device's MAC, even to the value it
// already has, flushes its neighbour entries, permanent ones included.
package overlay

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// Defaults of Config.
const (
	DefaultDevice  = "zn-vxlan"
	DefaultVNI     = 1
	DefaultPort    = 4789
	DefaultPeerSet = "zn-vxlan-peers"
	// RouteProtocol tags the routes this package owns (rtm_protocol). It
	// is not one of the numbers iproute2 names in rt_protos.
	RouteProtocol netlink.RouteProtocol = 0x5a
	// Overhead is what VXLAN over IPv4 adds to a frame: outer IPv4 (20),
	// UDP (8), VXLAN (8) and the inner Ethernet header (14).
	Overhead = 50
)

// Peer is one remote node as the overlay needs to know it.
type Peer struct {
	Name     string           // for errors and status only
	Underlay netip.Addr       // its underlay (public) IPv4 address
	VTEPMAC  net.HardwareAddr // the MAC of its VXLAN device
	Blocks   []netip.Prefix   // container address blocks it owns
}

// Config is this node's side of the overlay.
type Config struct {
	Device   string     // VXLAN device name; "" means DefaultDevice
	VNI      uint32     // 0 means DefaultVNI
	Port     uint16     // UDP port; 0 means DefaultPort
	Underlay netip.Addr // this node's underlay IPv4 address, held by a local link
	// MTU of the VXLAN device; 0 means the MTU of the link holding
	// Underlay minus Overhead.
	MTU int
	// MAC of the VXLAN device; nil means DeriveMAC(NodeName), so that a
	// restart or a re-creation keeps the address peers have programmed.
	MAC      net.HardwareAddr
	NodeName string
	// PeerSet names the ipset of peer underlay addresses; "" means
	// DefaultPeerSet.
	PeerSet string
	// Source4 and Source6, when set, are the source addresses of this
	// node's own traffic to remote blocks (the routes' prefsrc): an
	// address of this node inside one of its blocks, such as a zone
	// gateway, so remote containers answer over the overlay. Unset, the
	// kernel picks one, usually the underlay address, and the answers
	// travel the underlay unencapsulated with a container source address,
	// which a provider's anti-spoofing or a reverse-path filter drops.
	Source4, Source6 netip.Addr
}

// Device is the VXLAN device as the kernel holds it.
type Device struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	MTU   int
	VNI   uint32
	Port  uint16
	Local netip.Addr
	Up    bool
}

func (d Device) String() string {
	return fmt.Sprintf("%s #%d mac %s mtu %d vni %d port %d local %s up %v",
		d.Name, d.Index, d.MAC, d.MTU, d.VNI, d.Port, d.Local, d.Up)
}

// withDefaults fills the zero fields that have a default; MTU and MAC are
// resolved by Ensure, which needs the kernel for the MTU.
func (c Config) withDefaults() Config {
	if c.Device == "" {
		c.Device = DefaultDevice
	}
	if c.VNI == 0 {
		c.VNI = DefaultVNI
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.PeerSet == "" {
		c.PeerSet = DefaultPeerSet
	}
	if c.MAC == nil && c.NodeName != "" {
		c.MAC = DeriveMAC(c.NodeName)
	}
	return c
}

func (c Config) validate() error {
	if len(c.Device) > 15 {
		return fmt.Errorf("overlay: device %q: longer than 15 bytes", c.Device)
	}
	if c.VNI >= 1<<24 {
		return fmt.Errorf("overlay: vni %d: more than 24 bits", c.VNI)
	}
	if !c.Underlay.Is4() || c.Underlay.IsUnspecified() || c.Underlay.IsMulticast() {
		return fmt.Errorf("overlay: underlay %q: want a unicast IPv4 address", c.Underlay)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fmt.Errorf("overlay: mtu %d: out of range 68-65535", c.MTU)
	}
	if c.MAC == nil {
		return errors.New("overlay: neither mac nor node name is set")
	}
	if err := checkUnicastMAC(c.MAC); err != nil {
		return fmt.Errorf("overlay: mac: %w", err)
	}
	if c.Source4.IsValid() && !c.Source4.Is4() {
		return fmt.Errorf("overlay: source4 %s: not an IPv4 address", c.Source4)
	}
	if c.Source6.IsValid() && (!c.Source6.Is6() || c.Source6.Is4In6()) {
		return fmt.Errorf("overlay: source6 %s: not an IPv6 address", c.Source6)
	}
	if len(c.PeerSet) > 31 {
		return fmt.Errorf("overlay: peer set %q: longer than 31 bytes", c.PeerSet)
	}
	return nil
}

func checkUnicastMAC(m net.HardwareAddr) error {
	if len(m) != 6 {
		return fmt.Errorf("%q is not a 6-byte MAC", m)
	}
	if m[0]&1 != 0 {
		return fmt.Errorf("%s is a multicast MAC", m)
	}
	if m.String() == "00:00:00:00:00:00" {
		return errors.New("the zero MAC")
	}
	return nil
}

// DeriveMAC returns the VTEP MAC of a node name: a hash of the name with the
// locally administered bit set and the multicast bit clear, so it is the
// same on every start and never collides with a vendor address.
func DeriveMAC(nodeName string) net.HardwareAddr {
	h := sha256.Sum256([]byte("zonenet vtep\x00" + nodeName))
	m := net.HardwareAddr(h[:6])
	m[0] = m[0]&^1 | 2
	return m
}

// Gateway6 is the IPv6 next hop of a peer with the given underlay IPv4
// address: the link-local address whose last 32 bits are that address
// (fe80::c000:202 for 192.0.2.2). Link-local, so it is on-link on the VXLAN
// device by definition and never routed anywhere else.
func Gateway6(underlay netip.Addr) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	v4 := underlay.As4()
	copy(a[12:], v4[:])
	return netip.AddrFrom16(a)
}

// dump repeats a netlink dump the kernel interrupted because the table
// changed while it was read.
func dump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 10; i++ {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
		time.Sleep(time.Duration(i+1) * 2 * time.Millisecond)
	}
	return v, err
}

// newHandle opens netlink sockets in the calling thread's namespace; every
// later call on the handle works there, whichever thread makes it.
func newHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("overlay: netlink: %w", err)
	}
	return h, nil
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addrOf(n.IP), ones)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
