//go:build linux

package multinode

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/pki"
)

// Two policies that differ in one port: under P1 frontend reaches the
// backend's 8080 only, under P2 its 9090 only.
const (
	policyP1 = `version: 1
defaults: {intraZone: allow, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: allow}
rules:
  - name: api
    source: frontend
    destination: {zone: backend, ports: [8080]}
    protocol: tcp
`
	policyP2 = `version: 1
defaults: {intraZone: allow, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: allow}
rules:
  - name: api-v2
    source: frontend
    destination: {zone: backend, ports: [9090]}
    protocol: tcp
`
	// Valid YAML, but "frontnd" is no zone of the network.
	policyBad = `version: 1
rules:
  - name: api
    source: frontnd
    destination: {zone: backend, ports: [8080]}
    protocol: tcp
`
)

// TestPolicyPush: three nodes run P1; zonenetctl policy push serves P2 to
// all of them (file, rules, and the cut of a connection P2 forbids), and
// a restarted zonenetd leaves it alone; an invalid policy is refused by zonenetctl, and one written straight into
// etcd is refused by every node, which keeps P2.
func TestPolicyPush(t *testing.T) {
	c := newCluster(t, opts{nodes: 3, policy: policyP1, nodePolicy: true})
	var fronts, backs []*tctr
	for _, n := range c.nodes {
		fronts = append(fronts, n.addCtr("frontend"))
		b := n.addCtr("backend")
		b.serve(t, 8080)
		b.serve(t, 9090)
		backs = append(backs, b)
	}
	c.waitConverged(10 * time.Second)
	under1 := map[int]bool{8080: true, 9090: false}
	under2 := map[int]bool{8080: false, 9090: true}
	checkCells(t, "P1", fronts, backs, under1)
	if t.Failed() {
		t.FailNow()
	}
	// A connection P2 forbids, open before the push: it must be cut.
	long := openExchange(t, fronts[0], backs[1], 8080)

	rev := c.push(t, policyP2, "pushed the policy of network "+c.network)
	pushed := time.Now()
	c.waitPolicy(t, policyP2, rev, 5*time.Second)
	t.Logf("every node runs P2 (revision %d) %s after the push", rev, time.Since(pushed).Round(time.Millisecond))
	checkCells(t, "P2", fronts, backs, under2)
	if err := long.exchange(1500 * time.Millisecond); err == nil {
		t.Errorf("%s -> %s:8080, opened under P1, still carries data under P2", fronts[0].name, backs[1].name)
	}
	for _, n := range c.nodes {
		if got := n.metric("zonenetd_policy_installs_total"); got != 1 {
			t.Errorf("%s installed %v policies, want 1 (P2)", n.name, got)
		}
		for _, l := range strings.Split(readFile(t, n.proc.log), "\n") {
			if strings.Contains(l, `msg="policy installed"`) {
				t.Logf("%s: %s", n.name, l)
			}
		}
	}

	// A restarted zonenetd finds P2 in its file already: nothing to install.
	n1 := c.nodes[0]
	n1.stop()
	n1.start()
	n1.waitHealthy(20 * time.Second)
	c.waitPolicy(t, policyP2, rev, 5*time.Second)
	if got := n1.metric("zonenetd_policy_installs_total"); got != 0 {
		t.Errorf("%s installed the policy it already ran %v times after a restart", n1.name, got)
	}

	// Refused by zonenetctl: nothing reaches etcd, which still holds P2
	// at the same revision (pushing P2 again writes nothing).
	out, err := c.pushErr(policyBad)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), `source "frontnd": is not a zone`) {
		t.Errorf("zonenetctl pushed an invalid policy: %v\n%s", err, out)
	}
	c.push(t, policyP2, fmt.Sprintf("already the policy of network %s (revision %d): nothing written", c.network, rev))

	// Written straight into etcd, past zonenetctl: every node refuses it
	// and keeps P2, in its file and in its rules.
	c.putRaw(t, policyBad)
	for _, n := range c.nodes {
		n.waitMetric("zonenetd_policy_refused_total", 1, 5*time.Second)
		if got := readFile(t, n.policy); got != policyP2 {
			t.Errorf("%s: policy file changed to %q after an invalid document in etcd", n.name, got)
		}
		if got, _ := n.labelled("zonenetd_policy_revision", c.network); got != float64(rev) {
			t.Errorf("%s: runs policy revision %v, want P2's %d", n.name, got, rev)
		}
		if log := readFile(t, n.proc.log); !strings.Contains(log, "refused the policy in etcd") || !strings.Contains(log, "frontnd") {
			t.Errorf("%s did not log the refusal:\n%s", n.name, tail(n.proc.log, 10))
		}
	}
	checkCells(t, "P2 after the invalid document", fronts, backs, under2)
}

// checkCells connects from each node's frontend container to the next
// node's backend container on every port, all at once, and reports the
// cells where the kernel disagrees with want.
func checkCells(t *testing.T, under string, fronts, backs []*tctr, want map[int]bool) {
	t.Helper()
	type cell struct {
		from, to *tctr
		port     int
		err      error
	}
	var cells []*cell
	for i, f := range fronts {
		for port := range want {
			cells = append(cells, &cell{from: f, to: backs[(i+1)%len(backs)], port: port})
		}
	}
	var wg sync.WaitGroup
	for _, x := range cells {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := netip.AddrPortFrom(x.to.ip, uint16(x.port)).String()
			tag, err := x.from.talk(addr, time.Second)
			var ne net.Error
			if want[x.port] && errors.As(err, &ne) && ne.Timeout() {
				// A first connect can queue behind ARP: one more try.
				tag, err = x.from.talk(addr, 3*time.Second)
			}
			if err == nil && tag != x.to.name {
				err = fmt.Errorf("answered by %s", tag)
			}
			x.err = err
		}()
	}
	wg.Wait()
	for _, x := range cells {
		if got := x.err == nil; got != want[x.port] {
			t.Errorf("under %s: %s -> %s port %d: connected=%v, want %v (%v)", under, x.from.name, x.to.name, x.port, got, want[x.port], x.err)
		}
	}
}

// lineConn is one long-lived connection to a container's line server.
type lineConn struct {
	c   net.Conn
	r   *bufio.Reader
	seq int
}

func openExchange(t *testing.T, from, to *tctr, port int) *lineConn {
	t.Helper()
	c, err := netns.Dial(from.ns.Path, "tcp", netip.AddrPortFrom(to.ip, uint16(port)).String(), 3*time.Second)
	if err != nil {
		t.Fatalf("%s -> %s:%d: %v", from.name, to.name, port, err)
	}
	t.Cleanup(func() { c.Close() })
	l := &lineConn{c: c, r: bufio.NewReader(c)}
	if err := l.exchange(3 * time.Second); err != nil {
		t.Fatalf("%s -> %s:%d: %v", from.name, to.name, port, err)
	}
	return l
}

func (l *lineConn) exchange(deadline time.Duration) error {
	l.seq++
	return exchange(l.c, l.r, l.seq, deadline)
}

var revisionRE = regexp.MustCompile(`revision (\d+)`)

// push runs zonenetctl policy push with doc from the underlay, where the
// operator's machine would be, and returns the revision it printed.
func (c *testCluster) push(t *testing.T, doc, want string) int64 {
	t.Helper()
	out, err := c.pushErr(doc)
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("zonenetctl policy push: %v\n%s\nwant %q", err, out, want)
	}
	m := revisionRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("zonenetctl policy push printed no revision:\n%s", out)
	}
	rev, _ := strconv.ParseInt(m[1], 10, 64)
	return rev
}

func (c *testCluster) pushErr(doc string) (string, error) {
	c.t.Helper()
	file := filepath.Join(c.t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		c.t.Fatal(err)
	}
	op := pki.DirFiles(c.pkiDir, "operator")
	out, err := c.ul.RunErr(c.bins.Ctl, "policy", "push", "--etcd", c.etcd.endpoint(), "--ca", op.CA, "--cert", op.Cert,
		"--key", op.Key, "--conflist", c.nodes[0].conflist, "--policy", file)
	return string(out), err
}

// putRaw stores doc as the network's policy with the cluster package,
// which does not validate it. etcd listens in the underlay namespace only,
// so this test's binary does it from there (TestPutPolicyHelper).
func (c *testCluster) putRaw(t *testing.T, doc string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "raw.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	op := pki.DirFiles(c.pkiDir, "operator")
	out, err := c.ul.RunErr(os.Args[0], "-test.run=^TestPutPolicyHelper$", "-test.count=1", "-test.timeout=30s", "--",
		"put-policy", c.etcd.endpoint(), op.CA, op.Cert, op.Key, c.network, file)
	if err != nil || !strings.Contains(string(out), "stored at revision") {
		t.Fatalf("store the policy straight into etcd: %v\n%s", err, out)
	}
}

// TestPutPolicyHelper is not a test: putRaw runs it inside the underlay
// namespace.
func TestPutPolicyHelper(t *testing.T) {
	a := flag.Args()
	if len(a) != 7 || a[0] != "put-policy" {
		t.Skip("run by TestPolicyPush inside the cluster's underlay namespace")
	}
	tlsCfg, err := pki.Files{CA: a[2], Cert: a[3], Key: a[4]}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(a[6])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := cluster.Open(ctx, cluster.Config{Endpoints: []string{a[1]}, TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rev, err := s.PutPolicy(ctx, a[5], doc)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("stored at revision %d\n", rev)
}

// waitPolicy waits until every node's policy file is doc and its zonenetd
// says it runs revision rev.
func (c *testCluster) waitPolicy(t *testing.T, doc string, rev int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, n := range c.nodes {
		for {
			b, _ := os.ReadFile(n.policy)
			got, _ := n.labelled("zonenetd_policy_revision", c.network)
			if string(b) == doc && got == float64(rev) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after %s: policy file %q, running revision %v; want revision %d:\n%s",
					n.name, timeout, b, got, rev, tail(n.proc.log, 15))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// labelled reads the sample of a metric whose network label is network.
func (n *tnode) labelled(name, network string) (float64, bool) {
	n.c.t.Helper()
	code, body, err := n.httpGet("/metrics")
	if err != nil || code != 200 {
		n.c.t.Fatalf("metrics of %s: %d %v", n.name, code, err)
	}
	prefix := fmt.Sprintf("%s{network=%q} ", name, network)
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// waitMetric waits for an unlabelled metric to reach want.
func (n *tnode) waitMetric(name string, want float64, timeout time.Duration) {
	n.c.t.Helper()
	deadline := time.Now().Add(timeout)
	for n.metric(name) != want {
		if time.Now().After(deadline) {
			n.c.t.Fatalf("%s: %s is %v after %s, want %v:\n%s", n.name, name, n.metric(name), timeout, want, tail(n.proc.log, 15))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
