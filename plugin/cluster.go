package plugin

// Cluster mode (store etcd), the plugin's side. ADD allocates in its one
// store transaction, as in local mode, but only inside the blocks of the
// zone this node owns; only when they are full (or there is none yet) does
// it ask zonenetd over its unix socket for another block, then allocate
// again. An ADD that finds room never dials the socket, so neither the
// daemon nor etcd behind it is on the hot path, and ADD keeps working
// within the node's blocks while etcd is down. DEL, CHECK and GC release
// and read locally and never need the daemon.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/zonenet/zonenet/daemon/api"
	"github.com/zonenet/zonenet/ipam"
)

// maxBlockRounds bounds the asks of one ADD. A round is lost only when
// other ADDs fill the block just answered first, so a few rounds cover
// any burst; more means something is wrong and the runtime should retry.
const maxBlockRounds = 8

// codedError is an error of this file with the CNI code the runtime sees.
type codedError struct {
	code uint
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) CNICode() uint { return e.code }

func (p *Plugin) daemonClient(r *request) api.Client {
	return api.Client{Socket: r.conf.DaemonSocket, Timeout: p.DaemonTimeout}
}

// allocateInBlocks is Allocate in cluster mode: in the node's blocks,
// asking zonenetd for a block whenever they are full.
func (p *Plugin) allocateInBlocks(r *request, req ipam.Request) (ipam.Attachment, error) {
	req.InBlocks = true
	var last *api.BlockResponse
	for round := 0; ; round++ {
		got, err := p.allocateLocal(r, req)
		var full *ipam.BlocksFullError
		if !errors.As(err, &full) {
			return got, err
		}
		if last != nil && full.Subnet.Contains(last.Block.Addr()) && !slices.Contains(full.Blocks, last.Block) {
			// Recorded, but not in the file we read: two data directories.
			return ipam.Attachment{}, &codedError{types.ErrInvalidNetworkConfig, fmt.Errorf(
				"zonenetd answered block %s of zone %s and recorded it in %s, but this network's store %s does not hold it: "+
					"the network's dataDir and zonenetd's must be the same", last.Block, full.Zone, last.Store, r.storePath())}
		}
		if round == maxBlockRounds {
			return ipam.Attachment{}, &codedError{types.ErrTryAgainLater, fmt.Errorf(
				"%w: other ADDs filled each block zonenetd answered with (%d asks); try again", full, round)}
		}
		resp, err := p.daemonClient(r).ClaimBlock(context.Background(), api.BlockRequest{
			Network: r.conf.Name, Zone: full.Zone, Subnet: full.Subnet,
			BlockSize: r.conf.BlockBits(full.Subnet), Full: full.Blocks,
		})
		if err != nil {
			return ipam.Attachment{}, daemonError(full.Error(), err, types.ErrTryAgainLater)
		}
		last = &resp
	}
}

// allocateLocal runs one Allocate in the store.
func (p *Plugin) allocateLocal(r *request, req ipam.Request) (got ipam.Attachment, err error) {
	err = p.withStore(r.storePath(), func(s *ipam.Store) error {
		got, err = s.Allocate(req)
		return err
	})
	return got, err
}

// daemonError gives an error of a call to zonenetd its CNI code: down
// (the daemon or the cluster store behind it) is the runtime's "try again
// later" for ADD and "not available" for STATUS, both in unavailable.
func daemonError(what string, err error, unavailable uint) error {
	err = fmt.Errorf("%s: %w", what, err)
	var nr *api.NotRunningError
	var te *api.TimeoutError
	var pr *api.Problem
	switch {
	case errors.As(err, &nr), errors.As(err, &te):
		return &codedError{unavailable, err}
	case errors.As(err, &pr) && pr.Code == api.CodeStoreUnreachable:
		return &codedError{unavailable, err}
	case errors.As(err, &pr) && pr.Code == api.CodeNoFreeBlock:
		// The zone is exhausted cluster-wide: as ErrExhausted in local mode.
		return &codedError{types.ErrTryAgainLater, err}
	}
	return &codedError{types.ErrInternal, err}
}

// clusterStatus is STATUS in cluster mode: ADD may need the daemon, so it
// must answer. The zone's usage in this store says nothing about the
// cluster's, so it is not looked at.
func (p *Plugin) clusterStatus(r *request) error {
	if _, err := p.daemonClient(r).Health(context.Background()); err != nil {
		err = daemonError("cluster mode (store etcd)", err, types.ErrPluginNotAvailable)
		return &types.Error{Code: types.ErrPluginNotAvailable, Msg: err.Error()}
	}
	return nil
}

// proxyARPIntact reports whether a zone's bridge answers ARP for the
// zone's addresses on other nodes (see setupZone); one file read.
func proxyARPIntact(bridge string, subnet netip.Prefix) bool {
	if !subnet.IsValid() {
		return true
	}
	v, err := readSysctl("net/ipv4/conf/" + bridge + "/proxy_arp")
	return err == nil && v == "1"
}

// OverlayDevice is the VXLAN device zonenetd makes on every node.
const OverlayDevice = "zn-vxlan"

// overlayMTU is the MTU a cluster-mode bridge and veth get when the
// configuration sets none: the overlay device's (underlay MTU - 50), so a
// container's full-size packet still fits once encapsulated. 0 (the
// kernel's default) when the daemon has not made the device yet.
func overlayMTU() int {
	l, err := netlinksafe.LinkByName(OverlayDevice)
	if err != nil {
		return 0
	}
	return l.Attrs().MTU
}
