package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/pki"
)

func TestCertsHelp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"certs", "--help"}, []string{"certs ca", "certs node"}},
		{[]string{"certs", "ca", "--help"}, []string{"-dir", "-name", "-days", "-force"}},
		{[]string{"certs", "node", "--help"}, []string{"-dir", "-name", "-ip", "-dns", "-days", "-force"}},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != exitOK || errOut != "" {
			t.Errorf("%v: code %d stderr %q", c.args, code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: help does not mention %q:\n%s", c.args, w, out)
			}
		}
	}
}

func TestCertsCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if code, _, errOut := runCLI("certs", "node", "--dir", dir, "--name", "n1"); code != exitFailed || !strings.Contains(errOut, "certs ca --dir") {
		t.Errorf("node before ca: code %d, stderr %q; want a hint to create the CA", code, errOut)
	}
	if code, out, errOut := runCLI("certs", "ca", "--dir", dir); code != exitOK || !strings.Contains(out, "ca.crt") {
		t.Fatalf("certs ca: code %d stdout %q stderr %q", code, out, errOut)
	}
	if code, _, errOut := runCLI("certs", "ca", "--dir", dir); code != exitFailed || !strings.Contains(errOut, "exists") {
		t.Errorf("second certs ca: code %d stderr %q; want a refusal", code, errOut)
	}
	code, _, errOut := runCLI("certs", "node", "--dir", dir, "--name", "n1",
		"--ip", "192.0.2.1", "--ip", "2001:db8::1", "--dns", "n1.example", "--dns", "etcd.example", "--days", "30")
	if code != exitOK {
		t.Fatalf("certs node: code %d stderr %q", code, errOut)
	}
	p, err := pki.LoadPair(pki.CertPath(dir, "n1"), pki.KeyPath(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, ip := range p.Cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"192.0.2.1", "2001:db8::1"}) || !slices.Equal(p.Cert.DNSNames, []string{"n1.example", "etcd.example"}) {
		t.Errorf("SANs: IPs %v DNS %v", ips, p.Cert.DNSNames)
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "etcd.example"}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if st, err := os.Stat(pki.KeyPath(dir, "n1")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key mode: %v %v", st.Mode(), err)
	}
	if code, _, _ := runCLI("certs", "node", "--dir", dir, "--name", "n1"); code != exitFailed {
		t.Errorf("reissue without --force: code %d, want %d", code, exitFailed)
	}
	if code, _, errOut := runCLI("certs", "node", "--dir", dir, "--name", "n1", "--force"); code != exitOK {
		t.Errorf("reissue with --force: code %d stderr %q", code, errOut)
	}
}

func TestCertsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"certs"},
		{"certs", "bogus"},
		{"certs", "ca"},
		{"certs", "ca", "--dir", dir, "--days", "0"},
		{"certs", "node", "--dir", dir},
		{"certs", "node", "--dir", dir, "--name", "../etc"},
		{"certs", "node", "--dir", dir, "--name", "n1", "--ip", "not-an-ip"},
		{"certs", "node", "--dir", dir, "--name", "n1", "extra"},
	} {
		code, out, errOut := runCLI(args...)
		if code != exitUsage || errOut == "" || out != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want %d with a message on stderr", args, code, out, errOut, exitUsage)
		}
	}
}
