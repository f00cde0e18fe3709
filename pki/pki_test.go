package pki_test

import (
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/pki"
)

func newCA(t *testing.T, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(pki.CASpec{Name: name})
	if err != nil {
		t.Fatalf("new CA: %v", err)
	}
	return ca
}

func issue(t *testing.T, ca *pki.CA, spec pki.CertSpec) *pki.Pair {
	t.Helper()
	p, err := ca.Issue(spec)
	if err != nil {
		t.Fatalf("issue %s: %v", spec.Name, err)
	}
	return p
}

func TestIssue(t *testing.T) {
	ca := newCA(t, "test CA")
	if !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA=%v MaxPathLenZero=%v KeyUsage=%v", ca.Cert.IsCA, ca.Cert.MaxPathLenZero, ca.Cert.KeyUsage)
	}
	p := issue(t, ca, pki.CertSpec{
		Name: "node-1",
		IPs:  []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")},
		DNS:  []string{"node-1.example", "*.nodes.example"},
	})
	if p.Key.Curve != elliptic.P256() {
		t.Errorf("key curve %s, want P-256", p.Key.Curve.Params().Name)
	}
	if p.Cert.Subject.CommonName != "node-1" || p.Cert.IsCA {
		t.Errorf("CN %q IsCA %v", p.Cert.Subject.CommonName, p.Cert.IsCA)
	}
	var ips []string
	for _, ip := range p.Cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"192.0.2.7", "2001:db8::7"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs %v, want %v", ips, want)
	}
	if want := []string{"node-1.example", "*.nodes.example"}; !slices.Equal(p.Cert.DNSNames, want) {
		t.Errorf("DNS SANs %v, want %v", p.Cert.DNSNames, want)
	}
	// The same certificate must verify as a server (for each SAN) and as a
	// client.
	for _, c := range []struct {
		host  string
		usage x509.ExtKeyUsage
	}{
		{"192.0.2.7", x509.ExtKeyUsageServerAuth},
		{"2001:db8::7", x509.ExtKeyUsageServerAuth},
		{"node-1.example", x509.ExtKeyUsageServerAuth},
		{"x.nodes.example", x509.ExtKeyUsageServerAuth},
		{"", x509.ExtKeyUsageClientAuth},
	} {
		_, err := p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: c.host, KeyUsages: []x509.ExtKeyUsage{c.usage}})
		if err != nil {
			t.Errorf("verify for %q usage %v: %v", c.host, c.usage, err)
		}
	}
	if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "192.0.2.8"}); err == nil {
		t.Error("certificate verifies for an address it does not name")
	}
	if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: newCA(t, "other").Pool()}); err == nil {
		t.Error("certificate verifies against another CA")
	}
}

func TestIssueRejects(t *testing.T) {
	ca := newCA(t, "test CA")
	for _, spec := range []pki.CertSpec{
		{Name: ""},
		{Name: "ca"},
		{Name: "../x"},
		{Name: ".hidden"},
		{Name: "a/b"},
		{Name: "n", DNS: []string{"bad_name.example"}},
		{Name: "n", DNS: []string{"-x.example"}},
		{Name: "n", IPs: []netip.Addr{{}}},
		{Name: "n", Validity: 20 * 365 * 24 * time.Hour}, // outlives the CA
	} {
		if _, err := ca.Issue(spec); err == nil {
			t.Errorf("Issue(%+v) succeeded, want an error", spec)
		}
	}
}

func TestWriteLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca := newCA(t, "test CA")
	if err := ca.Write(dir, false); err != nil {
		t.Fatalf("write CA: %v", err)
	}
	if err := ca.Write(dir, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write of the CA: %v, want fs.ErrExist", err)
	}
	loaded, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatalf("load CA: %v", err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !loaded.Key.Equal(ca.Key) {
		t.Fatal("loaded CA differs from the written one")
	}
	p := issue(t, loaded, pki.CertSpec{Name: "n1", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	if err := p.Write(dir, "n1", false); err != nil {
		t.Fatalf("write n1: %v", err)
	}
	for path, want := range map[string]os.FileMode{
		dir:                        0o700 | fs.ModeDir,
		pki.CAKeyPath(dir):         0o600,
		pki.CACertPath(dir):        0o644,
		pki.KeyPath(dir, "n1"):     0o600,
		pki.CertPath(dir, "n1"):    0o644,
		filepath.Join(dir, "n1.x"): 0, // must not exist
	} {
		st, err := os.Stat(path)
		if want == 0 {
			if err == nil {
				t.Errorf("%s exists", path)
			}
			continue
		}
		if err != nil {
			t.Errorf("stat: %v", err)
		} else if st.Mode() != want {
			t.Errorf("%s mode %v, want %v", path, st.Mode(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	// Overwrite replaces both files.
	p2 := issue(t, loaded, pki.CertSpec{Name: "n1"})
	if err := p2.Write(dir, "n1", true); err != nil {
		t.Fatalf("overwrite n1: %v", err)
	}
	back, err := pki.LoadPair(pki.CertPath(dir, "n1"), pki.KeyPath(dir, "n1"))
	if err != nil {
		t.Fatalf("load n1: %v", err)
	}
	if !back.Cert.Equal(p2.Cert) {
		t.Error("overwrite kept the old certificate")
	}
	// A key that is not the certificate's is refused.
	if err := os.WriteFile(pki.KeyPath(dir, "n1"), p.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadPair(pki.CertPath(dir, "n1"), pki.KeyPath(dir, "n1")); err == nil {
		t.Error("LoadPair accepted a key that does not match the certificate")
	}
	if _, err := pki.LoadCA(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadCA of a missing directory succeeded")
	}
}

// handshake runs one TLS connection over loopback and returns the error
// each side saw. In TLS 1.3 the client learns that its certificate was
// refused only when it reads, so the client reads the server's one byte.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = tc.Write([]byte{1})
		done <- err
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 1))
		c.Close()
	}
	return <-done, err
}

func TestMutualTLS(t *testing.T) {
	ca, other := newCA(t, "cluster"), newCA(t, "other")
	loopback := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	srv := issue(t, ca, pki.CertSpec{Name: "server", IPs: loopback})
	cli := issue(t, ca, pki.CertSpec{Name: "client"})
	stranger := issue(t, other, pki.CertSpec{Name: "client"})
	strangerSrv := issue(t, other, pki.CertSpec{Name: "server", IPs: loopback})
	wrongName := issue(t, ca, pki.CertSpec{Name: "server", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}})

	noCert := pki.ClientTLS(ca.Pool(), cli)
	noCert.Certificates = nil
	tls12 := pki.ClientTLS(ca.Pool(), cli)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	srv12 := pki.ServerTLS(ca.Pool(), srv)
	srv12.MinVersion, srv12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	for _, c := range []struct {
		name           string
		server, client *tls.Config
		ok             bool
	}{
		{"mutual", pki.ServerTLS(ca.Pool(), srv), pki.ClientTLS(ca.Pool(), cli), true},
		{"client without certificate", pki.ServerTLS(ca.Pool(), srv), noCert, false},
		{"client certificate of another CA", pki.ServerTLS(ca.Pool(), srv), pki.ClientTLS(ca.Pool(), stranger), false},
		{"client offering only TLS 1.2", pki.ServerTLS(ca.Pool(), srv), tls12, false},
		{"server offering only TLS 1.2", srv12, pki.ClientTLS(ca.Pool(), cli), false},
		{"server certificate of another CA", pki.ServerTLS(ca.Pool(), strangerSrv), pki.ClientTLS(ca.Pool(), cli), false},
		{"server certificate for another address", pki.ServerTLS(ca.Pool(), wrongName), pki.ClientTLS(ca.Pool(), cli), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			serr, cerr := handshake(t, c.server, c.client)
			if c.ok && (serr != nil || cerr != nil) {
				t.Fatalf("server: %v; client: %v", serr, cerr)
			}
			if !c.ok && (serr == nil || cerr == nil) {
				t.Fatalf("connection not refused on both ends: server: %v; client: %v", serr, cerr)
			}
		})
	}
}

func TestFilesConfig(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "cluster")
	if err := ca.Write(dir, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"server", "client"} {
		p := issue(t, ca, pki.CertSpec{Name: n, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
		if err := p.Write(dir, n, false); err != nil {
			t.Fatal(err)
		}
	}
	scfg, err := pki.DirFiles(dir, "server").ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := pki.DirFiles(dir, "client").ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if scfg.MinVersion != tls.VersionTLS13 || ccfg.MinVersion != tls.VersionTLS13 || scfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("server MinVersion %x ClientAuth %v, client MinVersion %x", scfg.MinVersion, scfg.ClientAuth, ccfg.MinVersion)
	}
	if serr, cerr := handshake(t, scfg, ccfg); serr != nil || cerr != nil {
		t.Fatalf("server: %v; client: %v", serr, cerr)
	}
	if _, err := pki.DirFiles(dir, "missing").ClientConfig(); err == nil {
		t.Error("client config from missing files succeeded")
	}
}
