package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/netns"
)

// bridgeMode attaches a container to its zone's bridge through a veth
// pair: gateway on the bridge, egress NAT per zone, published ports.
type bridgeMode struct{}

// extra is the per-attachment data bridge mode keeps in the store.
type extra struct {
	PortMappings []conf.PortMapping `json:"portMappings,omitempty"`
	// Spoof records that the attachment has an anti-spoofing chain (the
	// network had a policy at ADD), so DEL and GC remove it even if the
	// configuration changed since.
	Spoof bool `json:"spoof,omitempty"`
}

func (bridgeMode) add(p *Plugin, r *request) (res *current.Result, err error) {
	c := r.conf
	if same, err := netns.IsCurrent(r.cmd.Netns); err != nil {
		return nil, err
	} else if same {
		return nil, &conf.Error{Code: 8, Key: "CNI_NETNS", Value: r.cmd.Netns,
			Msg: "is the plugin's own (host) namespace; bridge mode needs the container's namespace (use mode host to share the host stack)"}
	}
	z, err := c.SelectZone(r.args)
	if err != nil {
		return nil, err
	}
	if c.Cluster() && c.MTU == 0 {
		c.MTU = overlayMTU()
	}
	if err := checkIfNameFree(r); err != nil {
		return nil, err
	}
	mac := firstMAC(c.Runtime.MAC, c.CNIArgs.MAC, r.args.MAC)
	if mac == nil {
		// Chosen here rather than by the kernel so the record holds it
		// from the start.
		mac = containerMAC(r.key)
	}
	rec := ipam.Attachment{
		Key: r.key, Zone: z.Name, Mode: string(conf.ModeBridge), HostVeth: hostVethName(r.key),
		Bridge: z.Bridge, Netns: r.cmd.Netns, Created: p.Now().UTC(),
	}
	rec.MAC = mac.String()
	if x := (extra{PortMappings: c.Runtime.PortMappings, Spoof: c.Policy != ""}); len(x.PortMappings) > 0 || x.Spoof {
		rec.Extra, _ = json.Marshal(x)
	}

	// 1. addresses: one store transaction (or the delegate plugin).
	owned, err := p.allocate(r, z, &rec)
	if err != nil {
		return nil, err
	}
	var undoZone func()
	defer func() {
		if err == nil {
			return
		}
		// Undo in reverse: the container's veth, then the zone setup this
		// ADD made (once the veth has left the bridge), then the lease,
		// last, so a crash half way through still leaves GC a record.
		if uerr := teardownBridge(p, r, &rec); uerr != nil {
			p.warnf("rollback of %s/%s: %v", r.key.ContainerID, r.key.IfName, uerr)
		}
		if undoZone != nil {
			undoZone()
		}
		if owned {
			if uerr := p.release(r, &rec); uerr != nil {
				p.warnf("rollback of %s/%s: %v", r.key.ContainerID, r.key.IfName, uerr)
			}
		}
	}()
	if p.Fault == "after-ipam" {
		return nil, errors.New("fault injected after IPAM")
	}

	// 2. the zone's bridge, gateway, forwarding and NAT.
	br, undoZone, err := p.ensureBridge(c, z)
	if err != nil {
		return nil, err
	}

	// 3. the veth pair, made inside the container with its peer here.
	hostNS, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
	if err != nil {
		return nil, fmt.Errorf("open host netns: %w", err)
	}
	defer hostNS.Close()
	spec := vethSpec{ContName: r.cmd.IfName, HostName: rec.HostVeth, MTU: c.MTU, MAC: mac, HostNSFd: int(hostNS.Fd())}
	var cont netlink.Link
	mkVeth := func() error {
		var err error
		cont, err = createVeth(spec)
		return err
	}
	err = netns.Do(r.cmd.Netns, mkVeth)
	if errors.Is(err, syscall.EEXIST) {
		// The container's name was free (checked above), so the host
		// name is taken: derived from the key, it can only be a leftover
		// of an ADD of this very attachment that died half way.
		if derr := deleteLink(rec.HostVeth); derr == nil {
			err = netns.Do(r.cmd.Netns, mkVeth)
		}
	}
	if err != nil {
		return nil, err
	}
	hostLink, err := netlinksafe.LinkByName(rec.HostVeth)
	if err != nil {
		return nil, fmt.Errorf("find host veth %s: %w", rec.HostVeth, err)
	}
	if err := netlink.LinkSetMaster(hostLink, br); err != nil {
		return nil, fmt.Errorf("attach %s to bridge %s: %w", rec.HostVeth, br.Attrs().Name, err)
	}
	if c.Policy != "" {
		if err := lockPort(hostLink, mac); err != nil {
			return nil, err
		}
	}
	if c.HairpinMode {
		if err := netlink.LinkSetHairpin(hostLink, true); err != nil {
			return nil, fmt.Errorf("hairpin on %s: %w", rec.HostVeth, err)
		}
	}
	if err := netlink.LinkSetUp(hostLink); err != nil {
		return nil, fmt.Errorf("set %s up: %w", rec.HostVeth, err)
	}
	if p.Fault == "after-veth" {
		return nil, errors.New("fault injected after veth")
	}

	// 4. addresses and routes inside the container.
	res = bridgeResult(r, z, &rec, br, hostLink, cont)
	err = netns.Do(r.cmd.Netns, func() error { return configureIface(cont, rec.IPs, z.GatewayFor) })
	if err != nil {
		return nil, fmt.Errorf("configure %s: %w", r.cmd.IfName, err)
	}

	// 5. under a policy, anti-spoofing: the container's addresses bound
	// to its MAC in the zone's sets (netlink, no exec); then published
	// ports, one restore.
	if m, ok := memberOf(c, &rec); ok {
		if err := acl.AddMember(p.Sets, m); err != nil {
			return nil, err
		}
	}
	if hp, ok := hostPorts(r, &rec); ok {
		if err := acl.AddHostPorts(p.IPT, hp); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// allocate reserves the container's addresses and records the
// attachment. owned is false when the record already existed (a retried
// ADD): then a failure must not release what someone else holds.
func (p *Plugin) allocate(r *request, z *conf.Zone, rec *ipam.Attachment) (owned bool, err error) {
	if r.conf.DelegateIPAM != "" {
		return p.allocateDelegated(r, rec)
	}
	src := r.staticIPs()
	created := rec.Created
	alloc := p.allocateLocal
	if r.conf.Cluster() {
		alloc = p.allocateInBlocks
	}
	got, err := alloc(r, ipam.Request{Attachment: *rec, Pools: ipamZone(z).Pools, Static: src.ips})
	if err == nil {
		*rec = got
	}
	var se *ipam.StaticError
	if errors.As(err, &se) {
		return false, &conf.Error{Code: src.code, Key: src.key, Value: se.IP.String(),
			Msg: fmt.Sprintf("zone %s of network %s: %s", se.Zone, se.Network, se.Reason)}
	}
	if err != nil {
		return false, err
	}
	return rec.Created.Equal(created), nil
}

func (p *Plugin) release(r *request, rec *ipam.Attachment) error {
	var errs []error
	if rec.Delegated != "" {
		errs = append(errs, p.delegateDel(r, rec.Delegated))
	}
	errs = append(errs, p.withStore(r.storePath(), func(s *ipam.Store) error {
		_, _, err := s.Release(rec.Key)
		return err
	}))
	return errors.Join(errs...)
}

func (bridgeMode) del(p *Plugin, r *request, rec *ipam.Attachment) error {
	if rec == nil {
		// No record: ADD never got as far as leasing (it leases first),
		// or this is a repeated DEL. Only a veth our name scheme would
		// have made is ours to remove; the container's interfaces are not.
		err := ignoreNotFound(deleteLink(hostVethName(r.key)))
		if r.conf.DelegateIPAM != "" {
			// The delegate may hold a lease we never recorded.
			err = errors.Join(err, p.delegateDel(r, r.conf.DelegateIPAM))
		}
		return err
	}
	err := teardownBridge(p, r, rec)
	if rec.Delegated != "" {
		err = errors.Join(err, p.delegateDel(r, rec.Delegated))
	}
	return err
}

// deleteLink deletes a link of the current namespace by name.
func deleteLink(name string) error {
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkDel(l)
}

// teardownBridge removes the container's veth and published ports.
// Everything already gone counts as removed.
func teardownBridge(p *Plugin, r *request, rec *ipam.Attachment) error {
	var errs []error
	// Deleting the host end removes the pair: no trip into the container
	// namespace in the common case.
	if l, err := netlinksafe.LinkByName(rec.HostVeth); err == nil {
		errs = append(errs, ignoreNotFound(netlink.LinkDel(l)))
	} else if r.cmd.Netns != "" {
		// The host end is gone or was moved: remove the container end,
		// but only if it is the one we made (same MAC).
		err := netns.Do(r.cmd.Netns, func() error {
			l, err := netlinksafe.LinkByName(r.cmd.IfName)
			if err != nil || l.Type() != "veth" || l.Attrs().HardwareAddr.String() != rec.MAC {
				return nil
			}
			return ignoreNotFound(netlink.LinkDel(l))
		})
		var nsErr ns.NSPathNotExistErr
		if err != nil && !errors.As(err, &nsErr) && !errors.Is(err, os.ErrNotExist) {
			p.warnf("netns %s: %v", r.cmd.Netns, err)
		}
	}
	if m, ok := memberOf(r.conf, rec); ok {
		errs = append(errs, acl.RemoveMember(p.Sets, m))
	}
	if hp, ok := hostPorts(r, rec); ok {
		errs = append(errs, acl.RemoveHostPorts(p.IPT, hp))
	}
	return errors.Join(errs...)
}

func ignoreNotFound(err error) error {
	var lnf netlink.LinkNotFoundError
	if err == nil || errors.As(err, &lnf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	return err
}

func bridgeResult(r *request, z *conf.Zone, rec *ipam.Attachment, br, host, cont netlink.Link) *current.Result {
	idx := 2
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: br.Attrs().Name, Mac: br.Attrs().HardwareAddr.String()},
			{Name: host.Attrs().Name, Mac: host.Attrs().HardwareAddr.String()},
			{Name: cont.Attrs().Name, Mac: cont.Attrs().HardwareAddr.String(), Sandbox: r.cmd.Netns},
		},
		DNS: dnsOf(r.conf),
	}
	for _, pfx := range rec.IPs {
		gw := z.GatewayFor(pfx.Addr())
		ipc := &current.IPConfig{Interface: &idx, Address: prefixToIPNet(pfx)}
		if gw.IsValid() {
			ipc.Gateway = net.IP(gw.AsSlice())
			dst := "0.0.0.0/0"
			if pfx.Addr().Is6() {
				dst = "::/0"
			}
			_, d, _ := net.ParseCIDR(dst)
			res.Routes = append(res.Routes, &types.Route{Dst: *d, GW: ipc.Gateway})
		}
		res.IPs = append(res.IPs, ipc)
	}
	return res
}

func prefixToIPNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func hasIPv6(ips []netip.Prefix) bool {
	for _, p := range ips {
		if p.Addr().Is6() {
			return true
		}
	}
	return false
}

func firstMAC(macs ...net.HardwareAddr) net.HardwareAddr {
	for _, m := range macs {
		if m != nil {
			return m
		}
	}
	return nil
}

// staticSource is where a container's requested addresses came from, so
// an error about one of them names the key the user set.
type staticSource struct {
	ips  []netip.Addr
	key  string
	code uint
}

func (r *request) staticIPs() staticSource {
	switch {
	case len(r.conf.Runtime.IPs) > 0:
		return staticSource{r.conf.Runtime.IPs, "runtimeConfig.ips", types.ErrInvalidNetworkConfig}
	case len(r.conf.CNIArgs.IPs) > 0:
		return staticSource{r.conf.CNIArgs.IPs, "args.cni.ips", types.ErrInvalidNetworkConfig}
	default:
		return staticSource{r.args.IPs, "CNI_ARGS IP", types.ErrInvalidEnvironmentVariables}
	}
}

// checkIfNameFree fails before anything is allocated when the container
// already has an interface of that name.
func checkIfNameFree(r *request) error {
	return netns.Do(r.cmd.Netns, func() error {
		if _, err := netlinksafe.LinkByName(r.cmd.IfName); err == nil {
			return &conf.Error{Code: types.ErrInvalidEnvironmentVariables, Key: "CNI_IFNAME", Value: r.cmd.IfName,
				Msg: "already exists in the container's namespace " + r.cmd.Netns}
		}
		return nil
	})
}
