package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/pki"
)

// proc is a long-running process of the demo (etcd, a zonenetd), ended by
// its PID and nothing else.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// startIn runs bin inside the named namespace. `ip netns exec` execs the
// binary in place, so the PID is the daemon's own. The process has its own
// group, so a Ctrl-C at the terminal reaches the demo only, which then
// stops the daemons in order; and it dies with the demo if the demo is
// killed outright, rather than keep running in a namespace nobody removes.
func startIn(nsName, logPath, bin string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", nsName, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: filepath.Base(bin), cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and, after grace, SIGKILL. A process that had already
// exited on its own is reported, with the end of its log. Nil and stopped
// processes are fine.
func (p *proc) stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	if !p.running() {
		if st := p.cmd.ProcessState; st != nil && !st.Success() && !p.signalled() {
			return fmt.Errorf("%s (pid %d) had exited: %v\n%s", p.name, p.pid(), st, p.tail(10))
		}
		return nil
	}
	_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	select {
	case <-p.exited:
		// Both daemons exit 0 on SIGTERM; anything else is worth
		// showing.
		if st := p.cmd.ProcessState; !st.Success() && !p.signalled() {
			return fmt.Errorf("%s (pid %d) exited with %v on SIGTERM:\n%s", p.name, p.pid(), st, p.tail(10))
		}
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(p.pid(), syscall.SIGKILL)
	<-p.exited
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s; killed", p.name, p.pid(), grace)
}

// signalled: the process ended on a signal the demo sent.
func (p *proc) signalled() bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// files are the TLS files of one name in the run's directory.
func (c *Cluster) files(name string) pki.Files {
	return pki.DirFiles(filepath.Join(c.dir, "pki"), name)
}

// makePKI makes the run's authority and a certificate for etcd (for its
// underlay address), each node and the operator who runs status. The CA
// key never leaves the run's directory, which teardown removes.
func (c *Cluster) makePKI() error {
	dir := filepath.Join(c.dir, "pki")
	ca, err := pki.NewCA(pki.CASpec{Name: "zonenet demo CA " + c.cfg.RunID})
	if err != nil {
		return err
	}
	if err := ca.Write(dir, false); err != nil {
		return err
	}
	specs := []pki.CertSpec{{Name: "etcd", IPs: []netip.Addr{c.etcdAddr}}, {Name: "operator"}}
	for _, n := range c.Nodes {
		specs = append(specs, pki.CertSpec{Name: n.Name})
	}
	for _, s := range specs {
		p, err := ca.Issue(s)
		if err != nil {
			return fmt.Errorf("certificate %s: %w", s.Name, err)
		}
		if err := p.Write(dir, s.Name, false); err != nil {
			return err
		}
	}
	return nil
}

const etcdPort = 2379

// startEtcd runs one etcd member in the underlay namespace on the
// underlay address, with mutual TLS for clients and the peer port, and
// its data in the run's directory. etcd 3.4 (Debian 12) has no minimum TLS
// version: allowing only one TLS 1.2 suite, which needs an RSA key while
// the key is ECDSA, leaves TLS 1.3 as the only way in.
func (c *Cluster) startEtcd(ctx context.Context) error {
	bin := c.cfg.Etcd
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("etcd"); err != nil {
			return errors.New("etcd not found in PATH: install Debian's etcd-server (make setup does)")
		}
	}
	f := c.files("etcd")
	client := c.EtcdEndpoint()
	peer := fmt.Sprintf("https://%s:%d", c.etcdAddr, etcdPort+1)
	p, err := startIn(c.ulName, filepath.Join(c.dir, "etcd.log"), bin,
		"--name", "demo", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "demo="+peer, "--initial-cluster-state", "new",
		"--cert-file", f.Cert, "--key-file", f.Key, "--trusted-ca-file", f.CA, "--client-cert-auth",
		"--peer-cert-file", f.Cert, "--peer-key-file", f.Key, "--peer-trusted-ca-file", f.CA, "--peer-client-cert-auth",
		"--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn")
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	c.etcd = p
	addr := netip.AddrPortFrom(c.etcdAddr, etcdPort).String()
	err = waitFor(ctx, 20*time.Second, p, func() error {
		conn, err := netns.Dial(netns.Path(c.ulName), "tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	c.logf("etcd pid %d listening on %s in %s", p.pid(), client, c.ulName)
	return nil
}

// waitFor polls check until it succeeds, p exits, ctx ends or timeout
// passes.
func waitFor(ctx context.Context, timeout time.Duration, p *proc, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p != nil && !p.running() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.cmd.ProcessState, p.tail(20))
		}
		if time.Now().After(deadline) {
			tail := ""
			if p != nil {
				tail = "\n" + p.tail(20)
			}
			return fmt.Errorf("not ready after %s: %w%s", timeout, err, tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// healthAddr is zonenetd's default health endpoint, on the node's own
// loopback.
const healthAddr = "127.0.0.1:9476"

// waitHealthy waits until the node's zonenetd answers /healthz with 200:
// etcd reached, node registered, overlay device and guard in place.
func (n *Node) waitHealthy(ctx context.Context, timeout time.Duration) error {
	path := netns.Path(n.Demo.HostNetns())
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(path, network, addr, time.Second)
		},
		DisableKeepAlives: true,
	}}
	err := waitFor(ctx, timeout, n.daemon, func() error {
		resp, err := cl.Get("http://" + healthAddr + "/healthz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("zonenetd: %w", err)
	}
	return nil
}

// status runs `zonenetctl status --etcd` in the underlay namespace with
// the operator's certificate, as an operator would on the cluster's
// network.
func (c *Cluster) status(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	f := c.files("operator")
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", c.ulName, c.cfg.Ctl,
		"status", "--etcd", c.EtcdEndpoint(), "--ca", f.CA, "--cert", f.Cert, "--key", f.Key)
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("zonenetctl status: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// FindBinary locates one of zonenet's binaries: explicit if set, else next
// to the running executable, else in ./bin (make build), else in PATH.
func FindBinary(name, explicit string) (string, error) {
	if explicit != "" {
		if err := isExecutable(explicit); err != nil {
			return "", fmt.Errorf("--%s %s: %w", name, explicit, err)
		}
		return filepath.Abs(explicit)
	}
	var cands []string
	if self, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(self), name))
	}
	cands = append(cands, filepath.Join("bin", name))
	for _, p := range cands {
		if isExecutable(p) == nil {
			return filepath.Abs(p)
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%s not found next to this program, in ./bin or in PATH; pass --%s PATH", name, name)
}
