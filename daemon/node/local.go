package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/daemon"
)

// serveLocal serves the plugin's unix socket (package daemon's endpoint)
// with a Claimer over the cluster store, and returns once the socket is
// served, or the reason it is not. The returned func waits for the server
// to stop after ctx ended.
func (d *Daemon) serveLocal(ctx context.Context) (func(), error) {
	// A socket that answers belongs to another zonenetd of this node: two
	// daemons would both register the node and program the overlay.
	if c, err := net.DialTimeout("unix", d.socket, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("local endpoint: socket %s answers: another zonenetd serves this node", d.socket)
	}
	srv := daemon.NewLocalServer(d.dataDir, claimer{d}, d.log.With("part", "local"))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, d.socket) }()
	wait := func() {
		if err := <-done; err != nil {
			d.log.Warn("local endpoint", "err", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("stopped at once")
			}
			return nil, fmt.Errorf("local endpoint: %w", err)
		default:
		}
		// Nobody answered before; whoever answers now is this server (a
		// socket left by a daemon that died refuses connections).
		if c, err := net.DialTimeout("unix", d.socket, time.Second); err == nil {
			c.Close()
			return wait, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("local endpoint: socket %s did not appear within 5s", d.socket)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// claimer is the local endpoint's way into the cluster store.
type claimer struct{ d *Daemon }

// Claim implements daemon.Claimer, translating the store's errors into
// the endpoint's: a full subnet, or a store that did not answer.
func (c claimer) Claim(ctx context.Context, network, zone string, subnet netip.Prefix, bits int) (netip.Prefix, error) {
	b, err := c.d.claimBlock(ctx, network, zone, subnet, bits)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, cluster.ErrNoFreeBlock):
		return b, fmt.Errorf("%w: %w", daemon.ErrNoFreeBlock, err)
	case errors.Is(err, errNotConnected), errors.Is(err, context.DeadlineExceeded):
		c.d.st.etcd(err)
		return b, fmt.Errorf("%w: %w", daemon.ErrStoreUnreachable, err)
	}
	return b, err
}
