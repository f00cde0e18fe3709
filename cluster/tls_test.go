package cluster_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/pki"
	"github.com/zonenet/zonenet/test/etcdtest"
)

// TestOpenTLS checks that only a client with a certificate of the
// cluster's CA, over TLS 1.3, gets in; the refusals come from the real
// etcd, and Open reports them within its dial timeout.
func TestOpenTLS(t *testing.T) {
	srv := etcdtest.New(t)
	good := srv.ClientTLS("good")

	other, err := pki.NewCA(pki.CASpec{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(pki.CertSpec{Name: "stranger"})
	if err != nil {
		t.Fatal(err)
	}
	otherCA := good.Clone()
	otherCA.Certificates = []tls.Certificate{stranger.TLSCertificate()}
	// Passes the Store's own check (a certificate source is set) but
	// sends none: the server must refuse.
	noCert := good.Clone()
	noCert.Certificates = nil
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{}, nil
	}
	tls12 := good.Clone()
	tls12.MaxVersion = tls.VersionTLS12
	untrusting := good.Clone()
	untrusting.RootCAs = other.Pool()

	const dial = 2 * time.Second
	for _, c := range []struct {
		name string
		cfg  *tls.Config
		why  string // in the error
	}{
		{"no client certificate", noCert, "bad certificate"},
		{"client certificate of another CA", otherCA, "bad certificate"},
		{"TLS 1.2", tls12, "no supported versions"},
		{"server not signed by the trusted CA", untrusting, "unknown authority"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			s, err := cluster.Open(context.Background(), cluster.Config{Endpoints: srv.Endpoints(), TLS: c.cfg, DialTimeout: dial})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if took := time.Since(start); took > dial+3*time.Second {
				t.Errorf("Open took %s to fail, dial timeout %s", took, dial)
			}
			if !strings.Contains(err.Error(), c.why) {
				t.Errorf("error does not say %q: %v", c.why, err)
			}
			t.Logf("refused: %v", err)
		})
	}

	s, err := cluster.Open(context.Background(), cluster.Config{Endpoints: srv.Endpoints(), TLS: good, DialTimeout: dial})
	if err != nil {
		t.Fatalf("Open with the cluster's certificate: %v", err)
	}
	defer s.Close()
	if _, _, err := s.Nodes(context.Background()); err != nil {
		t.Fatalf("nodes: %v", err)
	}

	// Configurations that cannot be mutual TLS are refused before dialling.
	for _, cfg := range []cluster.Config{
		{Endpoints: srv.Endpoints()},
		{Endpoints: srv.Endpoints(), TLS: &tls.Config{RootCAs: srv.CA.Pool()}},
		{TLS: good},
		{Endpoints: srv.Endpoints(), TLS: good, Prefix: "zonenet/"},
	} {
		if s, err := cluster.Open(context.Background(), cfg); err == nil || errors.Is(err, context.DeadlineExceeded) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%+v): %v, want a configuration error", cfg, err)
		}
	}
}
