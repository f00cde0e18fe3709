// Package etcdtest runs a real etcd server for a test: Debian's etcd
// binary, one member on 127.0.0.1 with free ports, a fresh data directory,
// and mutual TLS with a CA made for the test. Nothing else on the machine
// is touched: the process is ended by its PID and the directory removed
// when the test ends.
//
// etcd 3.4 has no option for a minimum TLS version. The server is started
// with a single TLS 1.2 cipher suite that needs an RSA certificate while its
// certificate is ECDSA, so no TLS 1.2 handshake can succeed; TLS 1.3 suites
// are not configurable in Go and stay on. The result is a server that
// speaks TLS 1.3 only, as the cluster's own endpoints do.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/zonenet/zonenet/pki"
)

// Timeouts of the harness. A single member elects itself in about a second.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
)

// Server is one etcd process. Its methods are for the test's goroutine.
type Server struct {
	t testing.TB
	// Dir holds data/, the TLS material in pki/ and etcd.log.
	Dir string
	// CA signed the server's certificate and is the only authority whose
	// client certificates the server accepts.
	CA *pki.CA

	bin                  string
	clientPort, peerPort int
	cmd                  *exec.Cmd
	exited               chan struct{}
	waitErr              error
	serial               atomic.Int64
}

// New starts etcd and waits until it serves requests. The test fails with a
// pointer to "make setup" if the etcd binary is missing.
func New(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		bin = "/usr/bin/etcd"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("etcd binary not found in PATH nor at %s: run `make setup` (installs Debian's etcd-server)", bin)
		}
	}
	s := &Server{t: t, Dir: t.TempDir(), bin: bin}
	s.makePKI()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			s.logTail(40)
		}
	})
	// A free port can be taken by someone else between probing and
	// etcd's bind; pick new ports and try again.
	for attempt := 1; ; attempt++ {
		s.clientPort, s.peerPort = freePort(t), freePort(t)
		for s.peerPort == s.clientPort {
			s.peerPort = freePort(t)
		}
		err := s.start()
		if err == nil {
			return s
		}
		if attempt == 3 || !strings.Contains(s.log(), "address already in use") {
			t.Fatalf("etcdtest: %v\n%s", err, s.tail(40))
		}
		_ = os.RemoveAll(filepath.Join(s.Dir, "data"))
	}
}

// Endpoints is the client URL of the server.
func (s *Server) Endpoints() []string {
	return []string{"https://127.0.0.1:" + strconv.Itoa(s.clientPort)}
}

// ClientTLS is a client configuration with a new certificate named name,
// signed by the server's CA.
func (s *Server) ClientTLS(name string) *tls.Config {
	s.t.Helper()
	p, err := s.CA.Issue(pki.CertSpec{Name: name})
	if err != nil {
		s.t.Fatalf("etcdtest: client certificate: %v", err)
	}
	return pki.ClientTLS(s.CA.Pool(), p)
}

// Client is a raw etcd client for the test to inspect or disturb the
// server, closed when the test ends.
func (s *Server) Client() *clientv3.Client {
	s.t.Helper()
	name := fmt.Sprintf("etcdtest-client-%d", s.serial.Add(1))
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   s.Endpoints(),
		TLS:         s.ClientTLS(name),
		DialTimeout: 5 * time.Second,
		// After Stop and Start, reconnect within a second rather than
		// after gRPC's default backoff, which grows to two minutes.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		})},
		Logger: zap.NewNop(),
	})
	if err != nil {
		s.t.Fatalf("etcdtest: client: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and waits for it.
// The data directory stays for Start. Stopping a stopped server is a no-op.
func (s *Server) Stop() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.t.Errorf("etcdtest: etcd (pid %d) ignored SIGTERM for %s; killing it", pid, stopTimeout)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Start brings a stopped server back on the same ports and data directory.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("etcdtest: Start of a running server")
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v\n%s", err, s.tail(40))
	}
}

func (s *Server) makePKI() {
	ca, err := pki.NewCA(pki.CASpec{Name: "etcdtest CA"})
	if err != nil {
		s.t.Fatalf("etcdtest: %v", err)
	}
	srv, err := ca.Issue(pki.CertSpec{Name: "etcd", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, DNS: []string{"localhost"}})
	if err != nil {
		s.t.Fatalf("etcdtest: %v", err)
	}
	dir := s.pkiDir()
	if err := ca.Write(dir, false); err != nil {
		s.t.Fatalf("etcdtest: %v", err)
	}
	if err := srv.Write(dir, "etcd", false); err != nil {
		s.t.Fatalf("etcdtest: %v", err)
	}
	s.CA = ca
}

func (s *Server) pkiDir() string  { return filepath.Join(s.Dir, "pki") }
func (s *Server) logPath() string { return filepath.Join(s.Dir, "etcd.log") }

func (s *Server) args() []string {
	client := "https://127.0.0.1:" + strconv.Itoa(s.clientPort)
	peer := "https://127.0.0.1:" + strconv.Itoa(s.peerPort)
	ca, cert, key := pki.CACertPath(s.pkiDir()), pki.CertPath(s.pkiDir(), "etcd"), pki.KeyPath(s.pkiDir(), "etcd")
	return []string{
		"--name", "etcdtest",
		"--data-dir", filepath.Join(s.Dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "etcdtest=" + peer, "--initial-cluster-state", "new",
		"--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
		"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
		// See the package comment: makes TLS 1.2 impossible.
		"--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	}
}

func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== etcdtest: %s %s\n", s.bin, strings.Join(s.args(), " "))
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies without running its cleanups, the kernel
	// ends etcd too rather than leaving it behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		s.waitErr = cmd.Wait()
		close(exited)
	}(s.exited)
	if err := s.waitHealthy(); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// waitHealthy waits until a linearizable read succeeds: the member has
// elected itself and serves clients over TLS.
func (s *Server) waitHealthy() error {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   s.Endpoints(),
		TLS:         s.ClientTLS("etcdtest-health"),
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("health client: %w", err)
	}
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := c.Get(ctx, "etcdtest-health")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("etcd (pid %d) exited during start: %v", s.cmd.Process.Pid, s.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd (pid %d) not healthy after %s: %w", s.cmd.Process.Pid, startTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

func (s *Server) tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "etcd.log:\n" + strings.Join(lines, "\n")
}

func (s *Server) logTail(n int) { s.t.Log(s.tail(n)) }

// freePort is a loopback TCP port nobody listened on a moment ago.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
