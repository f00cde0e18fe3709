// Package api is the protocol of zonenetd's local endpoint, a unix socket
// on each node (/run/zonenet/zonenetd.sock by default):
//
//	POST /v1/blocks  {"network","zone","subnet","blockSize","full":[...]}
//	                 → 200 {"block","claimed","store"}
//	GET  /v1/health  → 200 {"status":"ok","store"}
//
// Errors come back as a non-200 status with {"code","error"}: 409
// no-free-block, 503 store-unreachable, 400 bad-request, 500 internal.
//
// The plugin asks for a block when the zone's blocks on this node are full
// (or there is none yet); "full" lists the blocks it found full, so that a
// request that waited behind another one's claim is answered with the
// block just claimed ("claimed": false) instead of claiming one more. The
// daemon records the block in the node's store ("store" names the file)
// before it answers, so the plugin's next allocation sees it.
//
// The transport is HTTP/1.0 with JSON bodies: any HTTP tool can talk to
// the daemon, and the plugin's client needs so little of HTTP that the
// plugin binary does not link net/http (its exec time is what a container
// start pays). This package imports nothing internal.
package api

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// The endpoints.
const (
	PathBlocks = "/v1/blocks"
	PathHealth = "/v1/health"
)

// DefaultTimeout bounds one call of the client: a container start must
// fail clearly rather than hang on a stuck daemon.
const DefaultTimeout = 5 * time.Second

// maxFull bounds the "full" list: a node holds far fewer blocks.
const maxFull = 4096

// BlockRequest asks zonenetd for a block of a zone's subnet.
type BlockRequest struct {
	Network   string         `json:"network"`
	Zone      string         `json:"zone"`
	Subnet    netip.Prefix   `json:"subnet"`
	BlockSize int            `json:"blockSize"`
	Full      []netip.Prefix `json:"full,omitempty"`
}

// BlockResponse is the block the node may now allocate from.
type BlockResponse struct {
	Block netip.Prefix `json:"block"`
	// Claimed is false when the block was claimed for an earlier request
	// and is not in the caller's full list.
	Claimed bool `json:"claimed"`
	// Store is the file the block was recorded in.
	Store string `json:"store"`
}

// Health is the answer of /v1/health.
type Health struct {
	Status string `json:"status"`
	Store  string `json:"store"`
}

// Problem codes.
const (
	CodeNoFreeBlock      = "no-free-block"
	CodeStoreUnreachable = "store-unreachable"
	CodeBadRequest       = "bad-request"
	CodeInternal         = "internal"
)

// Problem is an error answer of the daemon.
type Problem struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (p *Problem) Error() string { return p.Message }

// Validate checks a request as the daemon reads it.
func (r *BlockRequest) Validate() error {
	s := r.Subnet
	switch {
	case r.Network == "" || len(r.Network) > 256:
		return errors.New("network: must be 1-256 bytes")
	case r.Zone == "" || len(r.Zone) > 64:
		return errors.New("zone: must be 1-64 bytes")
	case !s.IsValid() || s.Addr().Is4In6() || s.Addr().Zone() != "" || s.Masked() != s:
		return fmt.Errorf("subnet %q: must be a subnet without host bits", s)
	case r.BlockSize <= s.Bits() || r.BlockSize > s.Addr().BitLen()-2:
		return fmt.Errorf("blockSize %d: must be longer than the subnet %s and hold at least 4 addresses", r.BlockSize, s)
	case len(r.Full) > maxFull:
		return fmt.Errorf("full: more than %d blocks", maxFull)
	}
	for _, b := range r.Full {
		if !b.IsValid() || b.Masked() != b || b.Bits() < s.Bits() || !s.Contains(b.Addr()) {
			return fmt.Errorf("full: %s is not a block of %s", b, s)
		}
	}
	return nil
}
