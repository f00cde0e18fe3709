//go:build linux

package multinode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/pki"
	"github.com/zonenet/zonenet/test/cnitest"
)

// tnode is one simulated node: its namespace plays the node's host.
type tnode struct {
	c        *testCluster
	name     string
	underlay netip.Addr
	dir      string // data dir, socket, config, logs; kept across reboots
	ns       *cnitest.NS
	plugin   []byte // the plugin configuration the runtime passes
	conflist string
	policy   string // the policy file its conflist names
	files    pki.Files
	// args are added to zonenetd's command line at the next start.
	args  []string
	proc  *daemonProc
	boots int
	ctrs  []*tctr
}

// daemonProc is one zonenetd process.
type daemonProc struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

const healthAddr = "127.0.0.1:9476" // the default, in the node's own loopback

func (c *testCluster) newNode(name string, underlay netip.Addr) *tnode {
	c.t.Helper()
	n := &tnode{c: c, name: name, underlay: underlay, dir: c.t.TempDir()}
	files := c.issue(name)
	plugin := c.pluginConf(filepath.Join(n.dir, "data"), filepath.Join(n.dir, "zonenetd.sock"))
	n.policy = c.policy
	if c.nodePolicy {
		n.policy = filepath.Join(n.dir, "policy.yaml")
		if err := os.WriteFile(n.policy, []byte(readFile(c.t, c.policy)), 0o644); err != nil {
			c.t.Fatal(err)
		}
		plugin["policy"] = n.policy
	}
	var err error
	if n.plugin, err = json.Marshal(plugin); err != nil {
		c.t.Fatal(err)
	}
	conflist := filepath.Join(n.dir, "net.conflist")
	if err := os.WriteFile(conflist, c.conflist(plugin), 0o644); err != nil {
		c.t.Fatal(err)
	}
	n.files = files
	n.conflist = conflist
	c.t.Cleanup(func() {
		n.kill()
		// A zonenetd built with -race reports here what it found.
		for i := 1; i <= n.boots; i++ {
			if b, err := os.ReadFile(n.logPath(i)); err == nil &&
				(strings.Contains(string(b), "DATA RACE") || strings.Contains(string(b), "panic:")) {
				c.t.Errorf("%s zonenetd (boot %d) raced or panicked:\n%s", n.name, i, b)
			}
		}
		if c.t.Failed() {
			for i := 1; i <= n.boots; i++ {
				c.t.Logf("%s zonenetd log (boot %d):\n%s", n.name, i, tail(n.logPath(i), 40))
			}
		}
	})
	return n
}

func (n *tnode) configPath() string { return filepath.Join(n.dir, "zonenetd.yaml") }
func (n *tnode) logPath(boot int) string {
	return filepath.Join(n.dir, fmt.Sprintf("zonenetd.%d.log", boot))
}

// boot makes a fresh namespace for the node (a machine that starts),
// plugs it into the underlay and starts zonenetd in it.
func (n *tnode) boot() {
	n.c.t.Helper()
	n.ns = cnitest.NewNS(n.c.t, "znt-mn"+n.name)
	n.c.plug(n.ns, n.underlay)
	n.start()
}

// writeConfig writes zonenetd's config file from the node's fields.
func (n *tnode) writeConfig() {
	c := n.c
	c.t.Helper()
	cfg := fmt.Sprintf(`nodeName: %s
underlayAddress: %s
conflists: [%s]
etcdEndpoints: [%s]
etcdCA: %s
etcdCert: %s
etcdKey: %s
nodeTTL: %s
resync: 5s
reclaimInterval: 1s
logLevel: debug
`, n.name, n.underlay, n.conflist, c.etcd.endpoint(), n.files.CA, n.files.Cert, n.files.Key, nodeTTL)
	if c.grace != 0 {
		cfg += fmt.Sprintf("reclaimGrace: %s\n", c.grace)
	}
	if err := os.WriteFile(n.configPath(), []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// start runs zonenetd inside the node's namespace.
func (n *tnode) start() {
	t := n.c.t
	t.Helper()
	n.writeConfig()
	n.boots++
	log := n.logPath(n.boots)
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.ns.Name, n.c.zonenetd, "--config", n.configPath()}, n.args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start zonenetd on %s: %v", n.name, err)
	}
	p := &daemonProc{cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	n.proc = p
}

func (n *tnode) running() bool {
	if n.proc == nil {
		return false
	}
	select {
	case <-n.proc.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to zonenetd and waits for it to exit.
func (n *tnode) stop() time.Duration {
	n.c.t.Helper()
	start := time.Now()
	p := n.proc
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		n.c.t.Fatalf("zonenetd on %s ignored SIGTERM for 10s", n.name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		n.c.t.Errorf("zonenetd on %s exited with %d after SIGTERM:\n%s", n.name, code, tail(p.log, 20))
	}
	return time.Since(start)
}

// kill ends zonenetd with SIGKILL, as a crash or a dead machine would.
func (n *tnode) kill() {
	if !n.running() {
		return
	}
	_ = syscall.Kill(n.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-n.proc.exited
}

// die kills zonenetd and deletes the node's namespace: the machine is
// gone, with its containers' interfaces and its underlay link.
func (n *tnode) die() {
	n.c.t.Helper()
	n.kill()
	n.ns.Delete(n.c.t)
	n.ctrs = nil
}

// httpGet asks the node's zonenetd on its loopback, from inside the node.
func (n *tnode) httpGet(path string) (int, string, error) {
	nsPath := n.ns.Path
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(nsPath, network, addr, time.Second)
		},
		DisableKeepAlives: true,
	}}
	resp, err := cl.Get("http://" + healthAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitHealth waits for /healthz to answer code with a body holding want.
func (n *tnode) waitHealth(code int, want string, timeout time.Duration) {
	n.c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, body, err := n.httpGet("/healthz")
		if err == nil && got == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			n.c.t.Fatalf("%s /healthz: %d %q %v after %s, want %d with %q", n.name, got, body, err, timeout, code, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHealthy waits for /healthz to say ok: etcd reached, node
// registered, device, guard and first reconcile fine.
func (n *tnode) waitHealthy(timeout time.Duration) {
	n.c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := n.httpGet("/healthz")
		if err == nil && code == 200 {
			return
		}
		if !n.running() {
			n.c.t.Fatalf("zonenetd on %s exited:\n%s", n.name, tail(n.proc.log, 30))
		}
		if time.Now().After(deadline) {
			n.c.t.Fatalf("zonenetd on %s not healthy after %s: %d %q %v", n.name, timeout, code, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric reads one unlabelled sample of /metrics.
func (n *tnode) metric(name string) float64 {
	n.c.t.Helper()
	code, body, err := n.httpGet("/metrics")
	if err != nil || code != 200 {
		n.c.t.Fatalf("metrics of %s: %d %v", n.name, code, err)
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				n.c.t.Fatalf("metric %s of %s: %q", name, n.name, l)
			}
			return f
		}
	}
	n.c.t.Fatalf("metric %s not served by %s:\n%s", name, n.name, body)
	return 0
}
