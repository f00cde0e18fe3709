package plugin

import (
	"fmt"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/netns"
)

// noneMode gives the container loopback only.
type noneMode struct{}

func (noneMode) add(p *Plugin, r *request) (*current.Result, error) {
	if same, err := netns.IsCurrent(r.cmd.Netns); err != nil {
		return nil, err
	} else if same {
		return nil, &conf.Error{Code: 8, Key: "CNI_NETNS", Value: r.cmd.Netns,
			Msg: "is the plugin's own (host) namespace; mode none needs the container's namespace"}
	}
	var mac string
	err := netns.Do(r.cmd.Netns, func() error {
		lo, err := netlinksafe.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		mac = lo.Attrs().HardwareAddr.String()
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		return nil, fmt.Errorf("loopback in %s: %w", r.cmd.Netns, err)
	}
	rec := ipam.Attachment{Key: r.key, Mode: string(conf.ModeNone), Netns: r.cmd.Netns, Created: p.Now().UTC()}
	if err := p.withStore(r.storePath(), func(s *ipam.Store) error { return s.Put(rec) }); err != nil {
		return nil, err
	}
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: "lo", Mac: mac, Sandbox: r.cmd.Netns}},
		DNS:        dnsOf(r.conf),
	}, nil
}

func (noneMode) del(p *Plugin, r *request, a *ipam.Attachment) error { return nil }

func (noneMode) check(p *Plugin, r *request, a ipam.Attachment, prev *current.Result) error {
	return netns.Do(r.cmd.Netns, func() error {
		lo, err := netlinksafe.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("lo is down in %s", r.cmd.Netns)
		}
		return nil
	})
}
