package plugin

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/zonenet/zonenet/ipam"
)

// Delegated IPAM: when "ipam.type" names another plugin (host-local,
// static, dhcp …), that plugin hands out the addresses; zonenet still
// records the attachment so DEL, CHECK and GC know about it.

func (p *Plugin) delegateArgs(r *request, command string) (string, *invoke.Args, error) {
	paths := filepath.SplitList(r.cmd.Path)
	bin, err := invoke.FindInPath(r.conf.DelegateIPAM, paths)
	if err != nil {
		return "", nil, &types.Error{Code: types.ErrInvalidNetworkConfig,
			Msg: fmt.Sprintf("ipam.type %q: no such plugin in CNI_PATH %q", r.conf.DelegateIPAM, r.cmd.Path)}
	}
	return bin, &invoke.Args{Command: command, ContainerID: r.cmd.ContainerID, NetNS: r.cmd.Netns,
		IfName: r.cmd.IfName, PluginArgsStr: r.cmd.Args, Path: r.cmd.Path}, nil
}

func (p *Plugin) allocateDelegated(r *request, rec *ipam.Attachment) (bool, error) {
	bin, args, err := p.delegateArgs(r, "ADD")
	if err != nil {
		return false, err
	}
	raw, err := invoke.ExecPluginWithResult(context.Background(), bin, r.cmd.StdinData, args, nil)
	if err != nil {
		return false, fmt.Errorf("delegated IPAM %s: %w", r.conf.DelegateIPAM, err)
	}
	res, err := current.NewResultFromResult(raw)
	if err != nil {
		return false, fmt.Errorf("delegated IPAM %s result: %w", r.conf.DelegateIPAM, err)
	}
	rec.Delegated = r.conf.DelegateIPAM
	for _, ipc := range res.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ipc.Address.Mask.Size()
		rec.IPs = append(rec.IPs, netip.PrefixFrom(a.Unmap(), ones))
	}
	if len(rec.IPs) == 0 {
		_ = p.delegateDel(r, rec.Delegated)
		return false, fmt.Errorf("delegated IPAM %s returned no address", r.conf.DelegateIPAM)
	}
	if err := p.withStore(r.storePath(), func(s *ipam.Store) error { return s.Put(*rec) }); err != nil {
		_ = p.delegateDel(r, rec.Delegated)
		return false, err
	}
	return true, nil
}

func (p *Plugin) delegateDel(r *request, plugin string) error {
	if r.conf.DelegateIPAM == "" || r.conf.DelegateIPAM != plugin {
		return nil
	}
	bin, args, err := p.delegateArgs(r, "DEL")
	if err != nil {
		return err
	}
	if err := invoke.ExecPluginWithoutResult(context.Background(), bin, r.cmd.StdinData, args, nil); err != nil {
		return fmt.Errorf("delegated IPAM %s DEL: %w", plugin, err)
	}
	return nil
}
