package cluster

import (
	"errors"
	"fmt"
	"net/netip"
)

var (
	// ErrNoFreeBlock means every block of a zone's subnet is owned.
	// ClaimBlock returns it wrapped in a *NoFreeBlockError.
	ErrNoFreeBlock = errors.New("no free block")
	// ErrNotOwner means a block is owned by another node than the one
	// that tried to release it.
	ErrNotOwner = errors.New("block owned by another node")
	// ErrSubnetConflict means a subnet disagrees with what the cluster
	// already recorded: another zone or block size for the same subnet,
	// or an overlap with another subnet of the network.
	ErrSubnetConflict = errors.New("subnet conflicts with the cluster's record")
	// ErrNotFound means the requested record does not exist.
	ErrNotFound = errors.New("not found")
)

// NoFreeBlockError names the subnet that is full.
type NoFreeBlockError struct {
	Network, Zone string
	Subnet        netip.Prefix
	BlockBits     int
}

func (e *NoFreeBlockError) Error() string {
	return fmt.Sprintf("zone %s (%s) of network %s has no free /%d block", e.Zone, e.Subnet, e.Network, e.BlockBits)
}

func (e *NoFreeBlockError) Unwrap() error { return ErrNoFreeBlock }

// NotOwnerError names the block and its actual owner.
type NotOwnerError struct {
	Block Block  // as the caller gave it
	Owner string // the node that owns it
}

func (e *NotOwnerError) Error() string {
	return fmt.Sprintf("block %s of network %s is owned by node %s, not %s", e.Block.Prefix, e.Block.Network, e.Owner, e.Block.Node)
}

func (e *NotOwnerError) Unwrap() error { return ErrNotOwner }
