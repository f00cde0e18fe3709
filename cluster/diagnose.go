package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"
)

// diagnose explains why the first contact failed when the client only
// says it timed out (gRPC waits for a usable connection and does not tell
// why there was none): it dials each endpoint itself with the Store's TLS
// configuration and reports the first failure it meets, such as a
// refused connection or a certificate the other side rejected.
func diagnose(ctx context.Context, endpoints []string, cfg *tls.Config) error {
	for _, ep := range endpoints {
		host := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			host = u.Host
		}
		if err := probe(ctx, host, cfg); err != nil {
			return fmt.Errorf("%s: %w", host, err)
		}
	}
	return nil
}

func probe(ctx context.Context, host string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	if cfg.ServerName == "" {
		h, _, err := net.SplitHostPort(host)
		if err != nil {
			return err
		}
		cfg.ServerName = h
	}
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// A TLS 1.3 server rejects a client certificate after the client has
	// finished its handshake: only the first read tells.
	if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		return err
	}
	if _, err := io.ReadFull(conn, make([]byte, 9)); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil // connected; the server is merely slow
		}
		return err
	}
	return nil
}
