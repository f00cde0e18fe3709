package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/zonenet/zonenet/daemon/api"
	"github.com/zonenet/zonenet/ipam"
)

// Defaults of a LocalServer.
const (
	// DefaultClaimTimeout bounds one claim in the cluster store; it is
	// below the plugin's own timeout so the plugin hears why.
	DefaultClaimTimeout = 4 * time.Second
	// DefaultStoreTimeout bounds the wait for the node store's lock,
	// which plugin execs hold for one transaction at a time.
	DefaultStoreTimeout = 3 * time.Second
)

const maxRequest = 1 << 16

// LocalServer is zonenetd's endpoint for the plugin on this node (see
// package api for the protocol). It claims blocks through a Claimer and
// records them in the node store under its data directory, the file the
// plugin allocates from.
type LocalServer struct {
	store   string
	claimer Claimer
	log     *slog.Logger

	ClaimTimeout time.Duration
	StoreTimeout time.Duration

	mu    sync.Mutex
	zones map[zoneKey]chan struct{}
}

type zoneKey struct{ network, zone string }

// NewLocalServer returns a server for the node store in dataDir. log may
// be nil.
func NewLocalServer(dataDir string, c Claimer, log *slog.Logger) *LocalServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LocalServer{
		store:        ipam.PathIn(dataDir),
		claimer:      c,
		log:          log,
		ClaimTimeout: DefaultClaimTimeout,
		StoreTimeout: DefaultStoreTimeout,
		zones:        map[zoneKey]chan struct{}{},
	}
}

// Handler serves the endpoints; Serve puts it on the socket.
func (s *LocalServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathBlocks, s.handleBlocks)
	mux.HandleFunc("GET "+api.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Health{Status: "ok", Store: s.store})
	})
	return mux
}

func (s *LocalServer) handleBlocks(w http.ResponseWriter, r *http.Request) {
	var req api.BlockRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequest))
	if err := dec.Decode(&req); err != nil {
		s.problem(w, http.StatusBadRequest, api.CodeBadRequest, "request: "+err.Error())
		return
	}
	if err := req.Validate(); err != nil {
		s.problem(w, http.StatusBadRequest, api.CodeBadRequest, "request: "+err.Error())
		return
	}
	resp, status, err := s.block(r.Context(), req)
	if err != nil {
		s.problem(w, status, codeOf(status), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// block answers one request under the zone's lock. Requests that queued
// behind a claim find its block in the store and take it, so a burst of
// ADDs on a full node claims one block, not one each.
func (s *LocalServer) block(ctx context.Context, req api.BlockRequest) (api.BlockResponse, int, error) {
	unlock, err := s.lockZone(ctx, req.Network, req.Zone)
	if err != nil {
		return api.BlockResponse{}, http.StatusServiceUnavailable, err
	}
	defer unlock()
	// The store's lock is taken for one transaction at a time and never
	// held across the claim: plugin execs allocate from the other blocks
	// meanwhile, and the claim may take a cluster round trip or more.
	held, err := s.blocks(req.Network, req.Zone)
	if err != nil {
		return api.BlockResponse{}, http.StatusInternalServerError, err
	}
	for _, b := range held {
		if req.Subnet.Contains(b.Addr()) && !slices.Contains(req.Full, b) {
			return api.BlockResponse{Block: b, Store: s.store}, 0, nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.ClaimTimeout)
	defer cancel()
	start := time.Now()
	b, err := s.claimer.Claim(cctx, req.Network, req.Zone, req.Subnet, req.BlockSize)
	switch {
	case errors.Is(err, ErrNoFreeBlock):
		return api.BlockResponse{}, http.StatusConflict, fmt.Errorf(
			"zone %s (%s) of network %s has no free /%d block left in the cluster: %w", req.Zone, req.Subnet, req.Network, req.BlockSize, err)
	case errors.Is(err, ErrStoreUnreachable):
		return api.BlockResponse{}, http.StatusServiceUnavailable, fmt.Errorf("claim a block of zone %s: %w", req.Zone, err)
	case err != nil && cctx.Err() != nil:
		return api.BlockResponse{}, http.StatusServiceUnavailable, fmt.Errorf(
			"claim a block of zone %s: %w: no answer within %s (%v)", req.Zone, ErrStoreUnreachable, s.ClaimTimeout, err)
	case err != nil:
		return api.BlockResponse{}, http.StatusInternalServerError, fmt.Errorf("claim a block of zone %s: %w", req.Zone, err)
	}
	if b.Masked() != b || b.Bits() != req.BlockSize || !req.Subnet.Contains(b.Addr()) || slices.Contains(held, b) {
		return api.BlockResponse{}, http.StatusInternalServerError, fmt.Errorf(
			"claim a block of zone %s: got %s, which is not a new /%d block of %s", req.Zone, b, req.BlockSize, req.Subnet)
	}
	if err := s.withStore(func(st *ipam.Store) error { return st.AddBlock(req.Network, req.Zone, b) }); err != nil {
		// The block is ours in the cluster but unknown to the plugin: it
		// stays claimed, unused, until it is reclaimed or claimed again.
		s.log.Error("record claimed block", "network", req.Network, "zone", req.Zone, "block", b, "err", err)
		return api.BlockResponse{}, http.StatusInternalServerError, fmt.Errorf("record block %s: %w", b, err)
	}
	s.log.Info("claimed block", "network", req.Network, "zone", req.Zone, "block", b, "took", time.Since(start))
	return api.BlockResponse{Block: b, Claimed: true, Store: s.store}, 0, nil
}

// lockZone serialises the requests of one (network, zone); waiting ends
// with ctx (the plugin gave up).
func (s *LocalServer) lockZone(ctx context.Context, network, zone string) (func(), error) {
	k := zoneKey{network, zone}
	s.mu.Lock()
	ch, ok := s.zones[k]
	if !ok {
		ch = make(chan struct{}, 1)
		s.zones[k] = ch
	}
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another claim in zone %s: %w", zone, ctx.Err())
	}
}

func (s *LocalServer) blocks(network, zone string) (out []netip.Prefix, err error) {
	err = s.withStore(func(st *ipam.Store) error {
		out, err = st.Blocks(network, zone)
		return err
	})
	return out, err
}

// withStore opens the node store for one operation, as a plugin exec
// does, so the file's lock is held only for that transaction.
func (s *LocalServer) withStore(fn func(*ipam.Store) error) error {
	st, err := ipam.Open(s.store, s.StoreTimeout)
	if err != nil {
		return err
	}
	err = fn(st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

func codeOf(status int) string {
	switch status {
	case http.StatusConflict:
		return api.CodeNoFreeBlock
	case http.StatusServiceUnavailable:
		return api.CodeStoreUnreachable
	case http.StatusBadRequest:
		return api.CodeBadRequest
	}
	return api.CodeInternal
}

func (s *LocalServer) problem(w http.ResponseWriter, status int, code, msg string) {
	if status >= 500 {
		s.log.Warn("block request failed", "code", code, "err", msg)
	}
	writeJSON(w, status, api.Problem{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
