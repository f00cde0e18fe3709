package plugin

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/netns"
)

// hostMode shares the host's stack: nothing is created, nothing NATed;
// the result reports the host's own addresses.
type hostMode struct{}

func requireHostNetns(path string) error {
	same, err := netns.IsCurrent(path)
	if err != nil {
		return err
	}
	if !same {
		return &conf.Error{Code: types.ErrInvalidNetNS, Key: "CNI_NETNS", Value: path,
			Msg: "is not the host's network namespace: mode host shares the host stack, so the runtime must pass the host's netns"}
	}
	return nil
}

func (hostMode) add(p *Plugin, r *request) (*current.Result, error) {
	if err := requireHostNetns(r.cmd.Netns); err != nil {
		return nil, err
	}
	res, err := hostResult(r)
	if err != nil {
		return nil, err
	}
	rec := ipam.Attachment{Key: r.key, Mode: string(conf.ModeHost), Netns: r.cmd.Netns, Created: p.Now().UTC()}
	if err := p.withStore(r.storePath(), func(s *ipam.Store) error { return s.Put(rec) }); err != nil {
		return nil, err
	}
	return res, nil
}

// hostResult lists the host's interfaces that are up and their global
// addresses.
func hostResult(r *request) (*current.Result, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list host links: %w", err)
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion, DNS: dnsOf(r.conf)}
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		idx := -1
		for _, ad := range addrs {
			if ad.Scope != int(netlink.SCOPE_UNIVERSE) {
				continue
			}
			if idx < 0 {
				res.Interfaces = append(res.Interfaces, &current.Interface{Name: a.Name,
					Mac: a.HardwareAddr.String(), Sandbox: r.cmd.Netns})
				idx = len(res.Interfaces) - 1
			}
			i := idx
			res.IPs = append(res.IPs, &current.IPConfig{Interface: &i, Address: *ad.IPNet})
		}
	}
	return res, nil
}

func (hostMode) del(p *Plugin, r *request, a *ipam.Attachment) error { return nil }

func (hostMode) check(p *Plugin, r *request, a ipam.Attachment, prev *current.Result) error {
	return requireHostNetns(r.cmd.Netns)
}
