package etcdtest_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/pki"
	"github.com/zonenet/zonenet/test/etcdtest"
)

// TestStopStart checks that data survives a restart on the same ports and
// that a stopped server is really gone.
func TestStopStart(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	s.Stop()
	host := strings.TrimPrefix(s.Endpoints()[0], "https://")
	if conn, err := net.DialTimeout("tcp", host, time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Stop", host)
	}
	s.Start()
	resp, err := c.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get after restart: %v %v", resp, err)
	}
}

// TestTLS checks what the server accepts at the TLS level, with plain
// handshakes on its client port: the cluster's clients rely on this.
func TestTLS(t *testing.T) {
	s := etcdtest.New(t)
	host := strings.TrimPrefix(s.Endpoints()[0], "https://")
	other, err := pki.NewCA(pki.CASpec{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(pki.CertSpec{Name: "stranger"})
	if err != nil {
		t.Fatal(err)
	}
	good := s.ClientTLS("good")
	noCert := good.Clone()
	noCert.Certificates = nil
	otherCA := good.Clone()
	otherCA.Certificates = []tls.Certificate{stranger.TLSCertificate()}
	tls12 := good.Clone()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	for _, c := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"client certificate of the CA", good, true},
		{"no client certificate", noCert, false},
		{"client certificate of another CA", otherCA, false},
		{"TLS 1.2", tls12, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg.Clone()
			cfg.NextProtos = []string{"h2"} // what gRPC offers
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host, cfg)
			if err == nil {
				// TLS 1.3 servers reject a client certificate after the
				// client's side of the handshake: read to find out.
				_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
				_, err = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
				if err == nil {
					_, err = io.ReadFull(conn, make([]byte, 9)) // the server's SETTINGS frame header
				}
				if err == nil && conn.ConnectionState().Version != tls.VersionTLS13 {
					t.Errorf("negotiated TLS version %x, want TLS 1.3", conn.ConnectionState().Version)
				}
				conn.Close()
			}
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("accepted")
			}
			t.Logf("%v", err)
		})
	}
}

// TestCleanup checks that a test's server is gone, by PID, once the test
// ends.
func TestCleanup(t *testing.T) {
	var port int
	var dir string
	t.Run("inner", func(t *testing.T) {
		s := etcdtest.New(t)
		dir = s.Dir
		port, _ = strconv.Atoi(s.Endpoints()[0][strings.LastIndex(s.Endpoints()[0], ":")+1:])
	})
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		conn.Close()
		t.Errorf("port %d still open after the test ended", port)
	}
	if _, err := os.Stat(dir); err == nil || !os.IsNotExist(err) {
		t.Errorf("directory %s left behind (%v)", dir, err)
	}
}
