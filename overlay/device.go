package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Ensure creates the VXLAN device, or adopts the one that is there, and the
// (empty) peer set, in the calling thread's network namespace. Every
// attribute is compared before it is written, so an Ensure on a device that
// is already right makes no netlink write and returns no Changes. A device
// of that name whose VNI, port, local address or learning differ is
// recreated: those cannot all be changed in place, and the entries it held
// are rewritten by the next Reconcile, as are the neighbour entries a
// changed MAC flushes. A link of that name that is not a VXLAN device is
// left alone and reported as an error.
func Ensure(cfg Config) (Device, Changes, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Device{}, nil, err
	}
	h, err := newHandle()
	if err != nil {
		return Device{}, nil, err
	}
	defer h.Close()
	w := &writer{h: h}
	dev, err := w.ensureDevice(cfg)
	if err == nil {
		_, err = w.ensurePeerSet(cfg.PeerSet)
	}
	return dev, w.changes, err
}

// wantLink is the device Ensure makes.
func wantLink(cfg Config, mtu int) *netlink.Vxlan {
	return &netlink.Vxlan{
		// TxQLen -1 leaves the kernel's default queue length, as ip(8)
		// does; the zero value would ask for 0.
		LinkAttrs: netlink.LinkAttrs{Name: cfg.Device, MTU: mtu, HardwareAddr: cfg.MAC, TxQLen: -1},
		VxlanId:   int(cfg.VNI),
		SrcAddr:   cfg.Underlay.AsSlice(),
		Port:      int(cfg.Port),
		Learning:  false,
		// The kernel's (and iproute2's) default for IPv4: the outer UDP
		// header carries a checksum, so a corrupted header is dropped
		// by the receiver instead of being decapsulated.
		UDPCSum: true,
	}
}

// mismatch says why an existing VXLAN device cannot be adopted as it is,
// or "" when it can.
func mismatch(have, want *netlink.Vxlan) string {
	var why []string
	if have.VxlanId != want.VxlanId {
		why = append(why, fmt.Sprintf("vni %d", have.VxlanId))
	}
	if have.Port != want.Port {
		why = append(why, fmt.Sprintf("port %d", have.Port))
	}
	if !have.SrcAddr.Equal(want.SrcAddr) {
		why = append(why, fmt.Sprintf("local %s", have.SrcAddr))
	}
	if have.Learning {
		why = append(why, "learning on")
	}
	if len(have.Group) > 0 && !have.Group.IsUnspecified() {
		why = append(why, fmt.Sprintf("group %s", have.Group))
	}
	if have.FlowBased {
		why = append(why, "external")
	}
	if have.VtepDevIndex != 0 {
		why = append(why, fmt.Sprintf("dev #%d", have.VtepDevIndex))
	}
	if have.UDPCSum != want.UDPCSum {
		why = append(why, fmt.Sprintf("udpcsum %v", have.UDPCSum))
	}
	return strings.Join(why, ", ")
}

func (w *writer) ensureDevice(cfg Config) (Device, error) {
	mtu := cfg.MTU
	if mtu == 0 {
		m, err := underlayMTU(w.h, cfg.Underlay)
		if err != nil {
			return Device{}, err
		}
		mtu = m - Overhead
	}
	want := wantLink(cfg, mtu)
	name := cfg.Device
	vx, err := w.lookup(name)
	if err != nil {
		return Device{}, err
	}
	if vx != nil {
		if why := mismatch(vx, want); why != "" {
			if err := w.do(Del, KindLink, name+" ("+why+")", func() error { return w.h.LinkDel(vx) }); err != nil {
				return Device{}, err
			}
			vx = nil
		}
	}
	if vx == nil {
		if err := w.do(Add, KindLink, name, func() error { return w.h.LinkAdd(want) }); err != nil {
			return Device{}, err
		}
		if vx, err = w.lookup(name); err != nil || vx == nil {
			return Device{}, fmt.Errorf("overlay: %s vanished after it was created: %v", name, err)
		}
	}
	a := vx.Attrs()
	if a.MTU != mtu {
		key := fmt.Sprintf("%s mtu %d", name, mtu)
		if err := w.do(Set, KindLink, key, func() error { return w.h.LinkSetMTU(vx, mtu) }); err != nil {
			return Device{}, err
		}
	}
	// Only when it differs: writing the MAC flushes the device's
	// neighbour entries even when the value is the same.
	if !bytes.Equal(a.HardwareAddr, cfg.MAC) {
		key := fmt.Sprintf("%s address %s", name, cfg.MAC)
		if err := w.do(Set, KindLink, key, func() error { return w.h.LinkSetHardwareAddr(vx, cfg.MAC) }); err != nil {
			return Device{}, err
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := w.do(Set, KindLink, name+" up", func() error { return w.h.LinkSetUp(vx) }); err != nil {
			return Device{}, err
		}
	}
	if vx, err = w.lookup(name); err != nil || vx == nil {
		return Device{}, fmt.Errorf("overlay: read %s back: %v", name, err)
	}
	return deviceOf(vx), nil
}

// lookup returns the VXLAN device called name, nil when there is no link of
// that name, and an error when the link is something else.
func (w *writer) lookup(name string) (*netlink.Vxlan, error) {
	return lookupVxlan(w.h, name)
}

func lookupVxlan(h *netlink.Handle, name string) (*netlink.Vxlan, error) {
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("overlay: look up %s: %w", name, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("overlay: link %s exists and is a %s device, not vxlan; not touching it", name, l.Type())
	}
	return vx, nil
}

func deviceOf(vx *netlink.Vxlan) Device {
	a := vx.Attrs()
	return Device{
		Name:  a.Name,
		Index: a.Index,
		MAC:   append(net.HardwareAddr(nil), a.HardwareAddr...),
		MTU:   a.MTU,
		VNI:   uint32(vx.VxlanId),
		Port:  uint16(vx.Port),
		Local: addrOf(vx.SrcAddr),
		Up:    a.Flags&net.FlagUp != 0,
	}
}

// underlayMTU is the MTU of the link that holds the underlay address: the
// link the encapsulated packets leave by on a node with one uplink.
func underlayMTU(h *netlink.Handle, underlay netip.Addr) (int, error) {
	addrs, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return 0, fmt.Errorf("overlay: list addresses: %w", err)
	}
	for _, a := range addrs {
		if addrOf(a.IP) != underlay {
			continue
		}
		l, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("overlay: link #%d holding %s: %w", a.LinkIndex, underlay, err)
		}
		return l.Attrs().MTU, nil
	}
	return 0, fmt.Errorf("overlay: underlay %s: no local link holds it (set mtu explicitly or add the address)", underlay)
}

// Remove deletes the VXLAN device (its FDB, neighbour entries and routes go
// with it) and the peer set. Nothing to remove is success. The peer set
// cannot be destroyed while a firewall rule refers to it: remove the VXLAN
// guard (acl.RemoveVXLANGuard) first.
func Remove(cfg Config) error {
	cfg = cfg.withDefaults()
	h, err := newHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	var errs []error
	vx, err := lookupVxlan(h, cfg.Device)
	switch {
	case err != nil:
		errs = append(errs, err)
	case vx != nil:
		if err := h.LinkDel(vx); err != nil {
			errs = append(errs, fmt.Errorf("overlay: delete %s: %w", cfg.Device, err))
		}
	}
	if err := h.IpsetDestroy(cfg.PeerSet); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("overlay: destroy ipset %s: %w", cfg.PeerSet, err))
	}
	return errors.Join(errs...)
}
