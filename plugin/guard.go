package plugin

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/ipam"
)

// guardZones are the network's zones as the anti-spoofing guard sees them.
func guardZones(c *conf.NetConf) []acl.GuardZone {
	out := make([]acl.GuardZone, 0, len(c.Zones))
	for i := range c.Zones {
		out = append(out, guardZone(&c.Zones[i]))
	}
	return out
}

func guardZone(z *conf.Zone) acl.GuardZone {
	return acl.GuardZone{Name: z.Name, Bridge: z.Bridge, Subnets: z.Prefixes()}
}

// memberOf returns the record's anti-spoofing entry, if it has one (the
// network had a policy at ADD).
func memberOf(c *conf.NetConf, rec *ipam.Attachment) (acl.Member, bool) {
	var x extra
	if len(rec.Extra) == 0 || json.Unmarshal(rec.Extra, &x) != nil || !x.Spoof || len(rec.IPs) == 0 {
		return acl.Member{}, false
	}
	z := c.Zone(rec.Zone)
	if z == nil {
		return acl.Member{}, false
	}
	mac, err := net.ParseMAC(rec.MAC)
	if err != nil {
		return acl.Member{}, false
	}
	m := acl.Member{Network: rec.Network, Zone: guardZone(z), MAC: mac}
	for _, p := range rec.IPs {
		m.IPs = append(m.IPs, p.Addr())
	}
	return m, true
}

// lockPort binds a bridge port to the container's MAC: learning off, the
// port locked (the bridge drops frames whose source MAC has no FDB entry
// on this port) and one static FDB entry for mac. One netlink message for
// the two port flags, one for the entry.
func lockPort(l netlink.Link, mac net.HardwareAddr) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Index = int32(l.Attrs().Index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
	info.AddRtAttr(nl.IFLA_BRPORT_LEARNING, []byte{0})
	info.AddRtAttr(nl.IFLA_BRPORT_LOCKED, []byte{1})
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("lock bridge port %s: %w", l.Attrs().Name, err)
	}
	fdb := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, HardwareAddr: mac,
		State: netlink.NUD_NOARP, Flags: netlink.NTF_MASTER}
	if err := netlink.NeighSet(fdb); err != nil {
		return fmt.Errorf("static FDB entry %s on %s: %w", mac, l.Attrs().Name, err)
	}
	return nil
}

// portLocked reports whether the port's FDB holds mac as a static entry
// and learning is off.
func portLocked(name string, mac net.HardwareAddr) (bool, error) {
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		return false, err
	}
	pi, err := netlink.LinkGetProtinfo(l)
	if err != nil {
		return false, fmt.Errorf("bridge port %s: %w", name, err)
	}
	if pi.Learning {
		return false, nil
	}
	fdb, err := netlink.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return false, fmt.Errorf("FDB of %s: %w", name, err)
	}
	for _, n := range fdb {
		if n.HardwareAddr.String() == mac.String() && n.State&netlink.NUD_NOARP != 0 {
			return true, nil
		}
	}
	return false, nil
}
