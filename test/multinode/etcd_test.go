//go:build linux

package multinode

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/pki"
	"github.com/zonenet/zonenet/test/cnitest"
)

// etcdServer is one etcd member inside the underlay namespace, listening
// on the underlay address: the nodes' namespaces reach it over the
// underlay, as real nodes reach a cluster's etcd, and nothing listens in
// the machine's own namespace.
type etcdServer struct {
	t      *testing.T
	ns     *cnitest.NS
	addr   netip.Addr
	dir    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

const etcdPort = 2379

// startEtcd runs etcd in ns on addr with mutual TLS: a server certificate
// for addr signed by ca, and only clients with a certificate of ca. etcd
// 3.4 has no minimum TLS version; offering one TLS 1.2 suite that needs an
// RSA key while the key is ECDSA leaves TLS 1.3 as the only way in (see
// test/etcdtest, which does the same on loopback).
func startEtcd(t *testing.T, ns *cnitest.NS, addr netip.Addr, ca *pki.CA, pkiDir string) *etcdServer {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd binary not found: run `make setup` (installs Debian's etcd-server): %v", err)
	}
	srv, err := ca.Issue(pki.CertSpec{Name: "etcd", IPs: []netip.Addr{addr}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Write(pkiDir, "etcd", false); err != nil {
		t.Fatal(err)
	}
	e := &etcdServer{t: t, ns: ns, addr: addr, dir: t.TempDir()}
	client := fmt.Sprintf("https://%s:%d", addr, etcdPort)
	peer := fmt.Sprintf("https://%s:%d", addr, etcdPort+1)
	crt, key, caFile := pki.CertPath(pkiDir, "etcd"), pki.KeyPath(pkiDir, "etcd"), pki.CACertPath(pkiDir)
	args := []string{"netns", "exec", ns.Name, bin,
		"--name", "multinode", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "multinode=" + peer, "--initial-cluster-state", "new",
		"--cert-file", crt, "--key-file", key, "--trusted-ca-file", caFile, "--client-cert-auth",
		"--peer-cert-file", crt, "--peer-key-file", key, "--peer-trusted-ca-file", caFile, "--peer-client-cert-auth",
		"--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	}
	e.args = args
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("etcd.log:\n%s", tail(e.logPath(), 30))
		}
	})
	e.start()
	return e
}

// start runs etcd (again, on the same data directory after a stop) and
// waits until it listens.
func (e *etcdServer) start() {
	e.t.Helper()
	logf, err := os.OpenFile(e.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer logf.Close()
	// ip netns exec execs etcd in place: the PID is etcd's.
	cmd := exec.Command("ip", e.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	e.cmd, e.exited = cmd, exited
	e.waitListening()
}

func (e *etcdServer) logPath() string { return filepath.Join(e.dir, "etcd.log") }

func (e *etcdServer) endpoint() string { return fmt.Sprintf("https://%s:%d", e.addr, etcdPort) }

// waitListening waits until the client port accepts connections inside
// the namespace; the daemons retry until the member has elected itself.
func (e *etcdServer) waitListening() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := netns.Dial(e.ns.Path, "tcp", netip.AddrPortFrom(e.addr, etcdPort).String(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-e.exited:
			e.t.Fatalf("etcd exited during start:\n%s", tail(e.logPath(), 30))
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("etcd not listening after 20s: %v\n%s", err, tail(e.logPath(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends etcd by its PID: SIGTERM, then SIGKILL.
func (e *etcdServer) stop() {
	if e.cmd == nil {
		return
	}
	select {
	case <-e.exited:
		return
	default:
	}
	_ = syscall.Kill(e.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.exited
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
