// Package daemon holds zonenetd's node-local parts. This file and
// local.go are its local endpoint: the unix socket the plugin asks for an
// address block when the node's blocks of a zone are full. Claiming the
// block in the cluster store is behind the Claimer interface, so the
// endpoint knows nothing of etcd.
package daemon

import (
	"context"
	"errors"
	"net/netip"
)

// Claimer claims a block of a zone's subnet for this node in the cluster
// store. A block it returns belongs to this node alone until the node
// gives it back (or loses it with its lease): that is what keeps an
// address from being handed out twice in the cluster.
type Claimer interface {
	// Claim returns a free block of subnet with prefix length blockBits,
	// now owned by this node. Errors wrap ErrNoFreeBlock or
	// ErrStoreUnreachable where those apply.
	Claim(ctx context.Context, network, zone string, subnet netip.Prefix, blockBits int) (netip.Prefix, error)
}

var (
	// ErrNoFreeBlock means every block of the subnet belongs to a node.
	ErrNoFreeBlock = errors.New("no free block")
	// ErrStoreUnreachable means the cluster store did not answer.
	ErrStoreUnreachable = errors.New("cluster store unreachable")
)
