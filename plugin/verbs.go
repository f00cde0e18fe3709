package plugin

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/ipam"
)

// attacher is one attachment mode.
type attacher interface {
	// add attaches the container and returns the result to print.
	add(p *Plugin, r *request) (*current.Result, error)
	// del detaches; a is the stored record, or nil when there was none.
	del(p *Plugin, r *request, a *ipam.Attachment) error
	// check verifies the attachment against prevResult.
	check(p *Plugin, r *request, a ipam.Attachment, prev *current.Result) error
}

func attacherFor(m conf.Mode) attacher {
	switch m {
	case conf.ModeHost:
		return hostMode{}
	case conf.ModeNone:
		return noneMode{}
	default:
		return bridgeMode{}
	}
}

// Add is the CNI ADD verb.
func (p *Plugin) Add(cmd *skel.CmdArgs) error {
	r, err := p.load(cmd, forAttach)
	if err != nil {
		return ToCNI(err)
	}
	if err := checkNetns(cmd.Netns); err != nil {
		return ToCNI(err)
	}
	res, err := attacherFor(r.conf.Mode).add(p, r)
	if err != nil {
		return ToCNI(err)
	}
	if len(r.conf.PrevResult) > 0 {
		// Chained after another plugin: pass its result on, ours added.
		if res, err = mergePrev(r, res); err != nil {
			return ToCNI(err)
		}
	}
	return p.printResult(r, res)
}

// Del is the CNI DEL verb. It succeeds when everything is already gone:
// no netns, an empty CNI_NETNS, no link, no record.
func (p *Plugin) Del(cmd *skel.CmdArgs) error {
	r, err := p.load(cmd, forTeardown)
	if err != nil {
		return ToCNI(err)
	}
	// The record goes last: a DEL killed half way leaves it for the
	// runtime's retry (or GC) to finish from.
	var rec *ipam.Attachment
	err = p.withStore(r.storePath(), func(s *ipam.Store) error {
		a, ok, err := s.Get(r.key)
		if ok {
			rec = &a
		}
		return err
	})
	if err != nil {
		return ToCNI(err)
	}
	mode := r.conf.Mode
	if rec != nil && rec.Mode != "" {
		mode = conf.Mode(rec.Mode)
	}
	if err := attacherFor(mode).del(p, r, rec); err != nil {
		return ToCNI(fmt.Errorf("del %s/%s: %w", cmd.ContainerID, cmd.IfName, err))
	}
	if rec == nil {
		return nil
	}
	return ToCNI(p.withStore(r.storePath(), func(s *ipam.Store) error {
		_, _, err := s.Release(r.key)
		return err
	}))
}

// Check is the CNI CHECK verb.
func (p *Plugin) Check(cmd *skel.CmdArgs) error {
	r, err := p.load(cmd, forAttach)
	if err != nil {
		return ToCNI(err)
	}
	if err := checkNetns(cmd.Netns); err != nil {
		return ToCNI(err)
	}
	if len(r.conf.PrevResult) == 0 {
		return &types.Error{Code: types.ErrInvalidNetworkConfig, Msg: "prevResult: is required for CHECK"}
	}
	prev, err := parsePrev(r)
	if err != nil {
		return err
	}
	var rec ipam.Attachment
	var found bool
	err = p.withStore(r.storePath(), func(s *ipam.Store) error {
		rec, found, err = s.Get(r.key)
		return err
	})
	if err != nil {
		return ToCNI(err)
	}
	if !found {
		return &types.Error{Code: types.ErrUnknownContainer,
			Msg: fmt.Sprintf("no attachment of %s/%s in network %s", cmd.ContainerID, cmd.IfName, r.conf.Name)}
	}
	if err := attacherFor(conf.Mode(rec.Mode)).check(p, r, rec, prev); err != nil {
		return ToCNI(err)
	}
	if rec.Delegated != "" {
		return ToCNI(p.delegateVerb(r, "CHECK"))
	}
	return nil
}

// GC is the CNI GC verb: every attachment of the network that is not in
// the valid list is torn down and released, and zones left with no
// attachment lose their bridge and NAT rules.
func (p *Plugin) GC(cmd *skel.CmdArgs) error {
	r, err := p.load(cmd, forNetwork)
	if err != nil {
		return ToCNI(err)
	}
	valid := map[ipam.Key]bool{}
	for _, v := range r.conf.ValidAttachments {
		valid[ipam.Key{Network: r.conf.Name, ContainerID: v.ContainerID, IfName: v.IfName}] = true
	}
	var all []ipam.Attachment
	if err := p.withStore(r.storePath(), func(s *ipam.Store) error {
		all, err = s.List(r.conf.Name)
		return err
	}); err != nil {
		return ToCNI(err)
	}
	var errs []error
	used := map[string]bool{}
	for i := range all {
		a := &all[i]
		if valid[a.Key] {
			used[a.Zone] = true
			continue
		}
		sub := &request{cmd: &skel.CmdArgs{ContainerID: a.ContainerID, IfName: a.IfName, Netns: a.Netns,
			Path: cmd.Path, StdinData: cmd.StdinData}, conf: r.conf, key: a.Key}
		if err := attacherFor(conf.Mode(a.Mode)).del(p, sub, a); err != nil {
			errs = append(errs, fmt.Errorf("gc %s/%s: %w", a.ContainerID, a.IfName, err))
			continue
		}
		if err := p.withStore(r.storePath(), func(s *ipam.Store) error {
			_, _, err := s.Release(a.Key)
			return err
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if r.conf.Mode == conf.ModeBridge {
		errs = append(errs, p.removeIdleZones(r, used))
	}
	errs = append(errs, p.delegateVerb(r, "GC"))
	return ToCNI(errors.Join(errs...))
}

// Status is the CNI STATUS verb: can this network take an ADD now?
func (p *Plugin) Status(cmd *skel.CmdArgs) error {
	r, err := p.load(cmd, forNetwork)
	if err != nil {
		return ToCNI(err)
	}
	if r.conf.DelegateIPAM != "" {
		if err := p.delegateVerb(r, "STATUS"); err != nil {
			return &types.Error{Code: types.ErrPluginNotAvailable, Msg: err.Error()}
		}
		return nil
	}
	if r.conf.Mode != conf.ModeBridge {
		return nil
	}
	if r.conf.Cluster() {
		return p.clusterStatus(r)
	}
	z, err := r.conf.SelectZone(conf.Args{})
	if err != nil {
		return ToCNI(err)
	}
	var usage []ipam.PoolUsage
	err = p.withStore(r.storePath(), func(s *ipam.Store) error {
		usage, err = s.Usage(r.conf.Name, ipamZone(z))
		return err
	})
	if err != nil {
		return &types.Error{Code: types.ErrPluginNotAvailable, Msg: "store: " + err.Error()}
	}
	for _, u := range usage {
		if u.Used >= u.Size {
			return &types.Error{Code: types.ErrPluginNotAvailable,
				Msg: fmt.Sprintf("default zone %s of network %s has no free address in %s (%d of %d used)",
					z.Name, r.conf.Name, u.Subnet, u.Used, u.Size)}
		}
	}
	return nil
}

// mergePrev appends our interfaces, addresses and routes to prevResult.
func mergePrev(r *request, ours *current.Result) (*current.Result, error) {
	prev, err := parsePrev(r)
	if err != nil {
		return nil, err
	}
	shift := len(prev.Interfaces)
	prev.Interfaces = append(prev.Interfaces, ours.Interfaces...)
	for _, ipc := range ours.IPs {
		if ipc.Interface != nil {
			i := *ipc.Interface + shift
			ipc.Interface = &i
		}
		prev.IPs = append(prev.IPs, ipc)
	}
	prev.Routes = append(prev.Routes, ours.Routes...)
	if len(ours.DNS.Nameservers) > 0 {
		prev.DNS = ours.DNS
	}
	return prev, nil
}

// parsePrev decodes prevResult in the configuration's CNI version.
func parsePrev(r *request) (*current.Result, error) {
	prevAny, err := version.NewResult(r.conf.CNIVersion, r.conf.PrevResult)
	if err == nil {
		var prev *current.Result
		if prev, err = current.NewResultFromResult(prevAny); err == nil {
			return prev, nil
		}
	}
	return nil, &types.Error{Code: types.ErrDecodingFailure, Msg: "prevResult: " + err.Error()}
}
