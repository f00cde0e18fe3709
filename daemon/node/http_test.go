package node

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/zonenet/zonenet/pki"
)

// TestServeMutualTLS: off loopback, /metrics is served over TLS 1.3 to
// clients with a certificate of the cluster's CA only.
func TestServeMutualTLS(t *testing.T) {
	ca, err := pki.NewCA(pki.CASpec{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA(pki.CASpec{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, name string) *pki.Pair {
		p, err := ca.Issue(pki.CertSpec{Name: name, DNS: []string{"localhost"}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := newState(log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srvTLS := pki.ServerTLS(ca.Pool(), issue(ca, "node"))
	addr := freeAddr(t)
	done, err := serveHTTP(ctx, addr, srvTLS, s.handler("n", "v"), log)
	if err != nil {
		t.Fatal(err)
	}
	get := func(cfg *tls.Config) error {
		cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := cl.Get("https://localhost:" + portOf(addr) + "/metrics")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(pki.ClientTLS(ca.Pool(), issue(ca, "scraper"))); err != nil {
		t.Errorf("client of the CA: %v", err)
	}
	if err := get(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}); err == nil {
		t.Error("a client without a certificate got through")
	}
	if err := get(pki.ClientTLS(ca.Pool(), issue(other, "stranger"))); err == nil {
		t.Error("a client of another CA got through")
	}
	old := pki.ClientTLS(ca.Pool(), issue(ca, "old"))
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if err := get(old); err == nil {
		t.Error("a TLS 1.2 client got through")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("server stopped with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("server did not stop")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
