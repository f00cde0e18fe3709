package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/overlay"
	"github.com/zonenet/zonenet/test/netdelay"
)

// Names inside the demo's own namespaces: nothing else lives there, so
// they need not be unique on the machine.
const (
	underlayBridge = "zncl-ul"
	nodeUplink     = "ul0" // the node's end of its underlay veth
)

// underlayMAC is the bridge's own MAC. A bridge without one takes the
// lowest MAC of its ports and changes it when that port goes, which would
// move etcd's address away under the nodes' ARP caches; real hosts keep
// theirs.
var underlayMAC = net.HardwareAddr{0x02, 0x7a, 0x6e, 0x00, 0x00, 0x01}

// makeUnderlay creates the underlay namespace with its bridge, which holds
// etcd's address.
func (c *Cluster) makeUnderlay() error {
	if _, err := netns.Create(c.ulName); err != nil {
		return err
	}
	c.mu.Lock()
	c.ulMade = true
	c.mu.Unlock()
	err := netns.Do(netns.Path(c.ulName), func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: underlayBridge, HardwareAddr: underlayMAC}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge %s: %w", underlayBridge, err)
		}
		addr := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(c.etcdAddr, ClusterUnderlay.Bits()))}
		if err := netlink.AddrAdd(br, addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", addr, underlayBridge, err)
		}
		return netlink.LinkSetUp(br)
	})
	if err != nil {
		return fmt.Errorf("underlay %s: %w", c.ulName, err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// plug gives the node a veth into the underlay bridge, made inside the
// underlay namespace with its peer placed straight into the node, so no
// interface ever appears in the machine's own namespace.
func (c *Cluster) plug(n *Node) error {
	nodePath := netns.Path(n.Demo.HostNetns())
	fd, err := os.Open(nodePath)
	if err != nil {
		return err
	}
	defer fd.Close()
	ulEnd := "ul-" + n.Name
	err = netns.Do(netns.Path(c.ulName), func() error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ulEnd}, PeerName: nodeUplink,
			PeerNamespace: netlink.NsFd(int(fd.Fd()))}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("add veth %s: %w", ulEnd, err)
		}
		l, err := netlink.LinkByName(ulEnd)
		if err != nil {
			return err
		}
		br, err := netlink.LinkByName(underlayBridge)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		return fmt.Errorf("plug into the underlay: %w", err)
	}
	err = netns.Do(nodePath, func() error {
		l, err := netlink.LinkByName(nodeUplink)
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(n.Underlay, ClusterUnderlay.Bits()))}
		if err := netlink.AddrAdd(l, addr); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	})
	if err != nil {
		return fmt.Errorf("underlay address: %w", err)
	}
	return nil
}

// unplug deletes every node's underlay veth from the underlay side, which
// takes its peer in the node with it.
func (c *Cluster) unplug() error {
	return netns.Do(netns.Path(c.ulName), func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("unplug the nodes: %w", err)
		}
		var errs []error
		for _, l := range links {
			if l.Type() == "veth" {
				if err := netlink.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("unplug %s: %w", l.Attrs().Name, err))
				}
			}
		}
		return errors.Join(errs...)
	})
}

func (c *Cluster) node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// startDelays delays, in each node of a pair, what it sends the other on
// the underlay: the overlay's VXLAN datagrams and anything else. Traffic
// to etcd is not delayed: etcd stands in for a cluster store that each
// region reaches nearby.
func (c *Cluster) startDelays() error {
	for _, dl := range c.cfg.Delays {
		if dl.OneWay == 0 {
			continue
		}
		for _, dir := range [][2]*Node{{c.node(dl.A), c.node(dl.B)}, {c.node(dl.B), c.node(dl.A)}} {
			from, to := dir[0], dir[1]
			m := netdelay.Match{Chain: "POSTROUTING", Out: nodeUplink, Dst: netip.PrefixFrom(to.Underlay, 32)}
			d, err := netdelay.StartWith(netns.Path(from.Demo.HostNetns()), m,
				netdelay.Options{Delay: dl.OneWay, Tag: "zonenet demo " + from.Name + "-" + to.Name})
			if err != nil {
				return fmt.Errorf("delay %s -> %s: %w", from.Name, to.Name, err)
			}
			c.mu.Lock()
			c.delayers = append(c.delayers, d)
			c.mu.Unlock()
		}
		c.logf("delay %s <-> %s: %s each way", dl.A, dl.B, dl.OneWay)
	}
	return nil
}

// oneWay is the configured delay between two nodes.
func (c *Cluster) oneWay(a, b string) time.Duration {
	for _, d := range c.cfg.Delays {
		if (d.A == a && d.B == b) || (d.A == b && d.B == a) {
			return d.OneWay
		}
	}
	return 0
}

// waitConverged waits until every node's kernel holds the overlay entries
// of every other node (its forwarding entry) and a route via it to each of
// its containers, as zonenetd programs them from etcd.
func (c *Cluster) waitConverged(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	err := waitFor(ctx, timeout, nil, func() error {
		for _, n := range c.Nodes {
			if why := c.missing(n); why != "" {
				return fmt.Errorf("overlay not converged: %s", why)
			}
		}
		return nil
	})
	if err == nil {
		c.logf("overlay converged in %s", time.Since(start).Round(time.Millisecond))
	}
	return err
}

// missing says what n's overlay lacks, or "".
func (c *Cluster) missing(n *Node) string {
	var st overlay.State
	err := netns.Do(netns.Path(n.Demo.HostNetns()), func() error {
		var err error
		st, err = overlay.Snapshot(overlay.Config{})
		return err
	})
	if err != nil {
		return fmt.Sprintf("%s: %v", n.Name, err)
	}
	for _, o := range c.Nodes {
		if o == n {
			continue
		}
		fdb := false
		for _, e := range st.FDB {
			fdb = fdb || e.Dst == o.Underlay
		}
		if !fdb {
			return fmt.Sprintf("%s has no forwarding entry for %s", n.Name, o.Name)
		}
		for _, x := range o.Demo.Containers {
			if x.Err != nil || !x.IP.IsValid() {
				continue
			}
			routed := false
			for _, r := range st.Routes {
				routed = routed || (r.Dst.Contains(x.IP.Addr()) && r.Gw == o.Underlay)
			}
			if !routed {
				return fmt.Sprintf("%s has no route to %s (%s) via %s", n.Name, x.Name, x.IP.Addr(), o.Name)
			}
		}
	}
	return ""
}
