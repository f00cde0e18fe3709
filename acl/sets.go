package acl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// SetSpec describes an ipset zonenet owns.
type SetSpec struct {
	Name   string
	Type   string       // "bitmap:ip,mac" or "hash:ip"
	Family Family       // for hash types
	Range  netip.Prefix // for bitmap types: the addresses it can hold
}

// SetEntry is one member: an address, and for bitmap:ip,mac the MAC it is
// bound to.
type SetEntry struct {
	Addr netip.Addr
	MAC  net.HardwareAddr
}

// SetInfo is what the kernel says of a set.
type SetInfo struct {
	Type       string
	References int // rules that use it: 0 means its rules are gone
	Entries    []SetEntry
}

// MemberSets manages ipsets member by member. Per-container state lives in sets rather than in
// per-container chains: a member is added or removed with one netlink
// message, without an iptables exec or a netfilter commit.
type MemberSets interface {
	// Ensure creates the set unless it exists with the same type.
	Ensure(s SetSpec) error
	// Destroy removes a set; a missing one is fine.
	Destroy(name string) error
	// Add adds (or rebinds) a member.
	Add(name string, e SetEntry) error
	// Del removes a member; a missing member or set is fine.
	Del(name string, e SetEntry) error
	// Info lists a set; found is false when it does not exist.
	Info(name string) (info SetInfo, found bool, err error)
}

// NetlinkSets is the MemberSets of the current network namespace.
type NetlinkSets struct{}

// Ensure implements MemberSets.
func (NetlinkSets) Ensure(s SetSpec) error {
	info, found, err := NetlinkSets{}.Info(s.Name)
	if err != nil {
		return err
	}
	if found {
		if info.Type != s.Type {
			return fmt.Errorf("ipset %s exists with type %s, not %s", s.Name, info.Type, s.Type)
		}
		return nil
	}
	if s.Type == "bitmap:ip,mac" {
		err = createBitmapIPMAC(s.Name, s.Range)
	} else {
		opts := netlink.IpsetCreateOptions{Family: unix.AF_INET}
		if s.Family == IPv6 {
			opts.Family = unix.AF_INET6
		}
		err = netlink.IpsetCreate(s.Name, s.Type, opts)
	}
	if err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("create ipset %s (%s): %w", s.Name, s.Type, err)
	}
	return nil
}

// Destroy implements MemberSets.
func (NetlinkSets) Destroy(name string) error {
	err := netlink.IpsetDestroy(name)
	if err != nil && !isNoSet(err) {
		return fmt.Errorf("destroy ipset %s: %w", name, err)
	}
	return nil
}

// Add implements MemberSets. A bitmap:ip,mac member is deleted first: the
// kernel keeps the old MAC of an address added again.
func (NetlinkSets) Add(name string, e SetEntry) error {
	ne := netlinkEntry(e)
	if e.MAC != nil {
		_ = netlink.IpsetDel(name, netlinkEntry(SetEntry{Addr: e.Addr}))
	}
	ne.Replace = true
	if err := netlink.IpsetAdd(name, ne); err != nil {
		return fmt.Errorf("add %s to ipset %s: %w", e.Addr, name, err)
	}
	return nil
}

// Del implements MemberSets.
func (NetlinkSets) Del(name string, e SetEntry) error {
	err := netlink.IpsetDel(name, netlinkEntry(SetEntry{Addr: e.Addr}))
	if err != nil && !isNoSet(err) && !isNotMember(err) {
		return fmt.Errorf("remove %s from ipset %s: %w", e.Addr, name, err)
	}
	return nil
}

// Info implements MemberSets.
func (NetlinkSets) Info(name string) (SetInfo, bool, error) {
	res, err := netlink.IpsetList(name)
	if err != nil {
		if isNoSet(err) {
			return SetInfo{}, false, nil
		}
		return SetInfo{}, false, fmt.Errorf("list ipset %s: %w", name, err)
	}
	info := SetInfo{Type: res.TypeName, References: int(res.References)}
	for _, e := range res.Entries {
		a, ok := netip.AddrFromSlice(e.IP)
		if !ok {
			continue
		}
		info.Entries = append(info.Entries, SetEntry{Addr: a.Unmap(), MAC: e.MAC})
	}
	return info, true, nil
}

func netlinkEntry(e SetEntry) *netlink.IPSetEntry {
	return &netlink.IPSetEntry{IP: net.IP(e.Addr.AsSlice()), MAC: e.MAC}
}

func isNoSet(err error) bool {
	var en syscall.Errno
	return errors.As(err, &en) && en == syscall.ENOENT
}

// isNotMember: deleting an address the set does not hold.
func isNotMember(err error) bool {
	var ie nl.IPSetError
	return errors.As(err, &ie) && ie == nl.IPSET_ERR_EXIST
}

// createBitmapIPMAC creates a bitmap:ip,mac set over r. The netlink
// library does not encode a bitmap's range, so the message is built here.
func createBitmapIPMAC(name string, r netip.Prefix) error {
	req := nl.NewNetlinkRequest(nl.IPSET_CMD_CREATE|(unix.NFNL_SUBSYS_IPSET<<8), unix.NLM_F_ACK|unix.NLM_F_EXCL)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_TYPENAME, nl.ZeroTerminated("bitmap:ip,mac")))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_REVISION, nl.Uint8Attr(0)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_FAMILY, nl.Uint8Attr(unix.AF_INET)))
	data := nl.NewRtAttr(nl.IPSET_ATTR_DATA|int(nl.NLA_F_NESTED), nil)
	for _, x := range []struct {
		attr int
		addr netip.Addr
	}{{nl.IPSET_ATTR_IP, r.Masked().Addr()}, {nl.IPSET_ATTR_IP_TO, lastOf(r)}} {
		ip := nl.NewRtAttr(nl.IPSET_ATTR_IPADDR_IPV4|int(nl.NLA_F_NET_BYTEORDER), x.addr.AsSlice())
		data.AddChild(nl.NewRtAttr(x.attr|int(nl.NLA_F_NESTED), ip.Serialize()))
	}
	req.AddData(data)
	_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	return err
}

// lastOf is the last address of a prefix.
func lastOf(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
