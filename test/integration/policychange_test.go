//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/test/cnitest"
)

// changePolicy allows frontend to open TCP connections to backend on the
// given ports; everything else between the zones is denied, in particular
// backend to frontend, so a cut connection cannot come back as a new one
// opened by the server.
func changePolicy(ports ...int) string {
	list := ""
	for i, p := range ports {
		if i > 0 {
			list += ", "
		}
		list += strconv.Itoa(p)
	}
	return `version: 1
defaults: {intraZone: allow, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: allow}
rules:
  - name: api
    source: frontend
    destination: {zone: backend, ports: [` + list + `]}
    protocol: tcp
`
}

// TestPolicyChangeUnderLoad changes a running network's policy back and
// forth with zonenetctl policy apply, dual stack, while traffic flows:
// P1 allows frontend to reach backend on 8080 and 9090, P2 on 8080 only,
// and neither on 7070. Long-lived connections on 8080 keep exchanging
// without a single miss and keep their conntrack entries; connections on
// 9090 stop as soon as P2 is applied and no new one gets through; a prober
// opening connections on 7070 all along never gets one through.
func TestPolicyChangeUnderLoad(t *testing.T) {
	e := newEnv(t, "1.1.0")
	if e.bins.Ctl == "" {
		t.Fatal("zonenetctl is not part of the build")
	}
	front, back := e.zone("frontend"), e.zone("backend")
	front.Subnet6, back.Subnet6 = cnitest.Subnet6(t).String(), cnitest.Subnet6(t).String()
	e.conf.Zones = []cnitest.Zone{front, back}
	e.conf.IPMasq = cnitest.Bool(false)
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1, p2 := write("p1.yaml", changePolicy(8080, 9090)), write("p2.yaml", changePolicy(8080))
	e.conf.Extra = map[string]any{"policy": p1}
	conflist := write("net.conf", string(e.conf.JSON(t)))

	client, server := e.newCtr(), e.newCtr()
	client.Conf.SetArgs(cnitest.CNIArgs{Zone: "frontend"})
	server.Conf.SetArgs(cnitest.CNIArgs{Zone: "backend"})
	e.add(client)
	res := e.add(server)
	var targets []netip.Addr // the server's IPv4 and IPv6 addresses
	for _, ip := range res.IPs {
		a, _ := netip.AddrFromSlice(ip.Address.IP)
		targets = append(targets, a.Unmap())
	}
	if len(targets) != 2 {
		t.Fatalf("server addresses %v, want one per family", targets)
	}
	client.NS.WaitAddrsReady(t, 5*time.Second)
	server.NS.WaitAddrsReady(t, 5*time.Second)
	for _, a := range targets {
		for _, port := range []int{8080, 9090, 7070} {
			lineEcho(t, server.NS, hostPort(a, port))
		}
	}
	// Entries keep the time they were made: a cut and re-made entry
	// shows as a new start time.
	e.host.Run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_timestamp=1")

	apply := func(path string) int {
		t.Helper()
		out := e.host.Run(t, e.bins.Ctl, "policy", "apply", "--conflist", conflist, "--policy", path)
		m := regexp.MustCompile(`(\d+) tracked connections`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("policy apply %s: no count of cut connections in %q", filepath.Base(path), out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}

	var steady []*loopFlow
	for _, a := range targets {
		f := openFlow(t, client.NS, hostPort(a, 8080), 3*time.Second)
		f.waitOK(t, 5)
		steady = append(steady, f)
	}
	starts := map[*loopFlow]uint64{}
	for _, f := range steady {
		starts[f] = ctStart(t, e.host, f)
	}
	var probeAddrs []string
	for _, a := range targets {
		probeAddrs = append(probeAddrs, hostPort(a, 7070))
	}
	pr := startProber(t, client.NS, probeAddrs, 3)

	const cycles = 3
	for cycle := range cycles {
		if cycle > 0 {
			if n := apply(p1); n != 0 {
				t.Errorf("cycle %d: applying P1 cut %d connections; it forbids none of those running", cycle, n)
			}
		}
		var cut []*loopFlow
		for _, a := range targets {
			f := openFlow(t, client.NS, hostPort(a, 9090), time.Second)
			f.waitOK(t, 5)
			cut = append(cut, f)
		}
		n := apply(p2)
		applied := time.Now()
		if n < len(cut) {
			t.Errorf("cycle %d: applying P2 cut %d connections, want at least the %d on 9090", cycle, n, len(cut))
		}
		for _, f := range cut {
			f.expectCut(t, applied, 5*time.Second)
			if tag, err := cnitest.TalkTCP(client.NS, f.addr, 700*time.Millisecond); err == nil {
				t.Errorf("cycle %d: a new connection to %s got through under P2 (answered by %s)", cycle, f.addr, tag)
			}
			f.close()
		}
		t.Logf("cycle %d: P2 cut %d connections", cycle, n)
	}

	through, attempts := pr.finish()
	for _, s := range through {
		t.Errorf("prober got a connection through: %s", s)
	}
	if attempts < 20 {
		t.Errorf("prober made %d attempts, too few to cover the changes", attempts)
	}
	for _, f := range steady {
		ok, errs := f.finish()
		for _, err := range errs {
			t.Errorf("%s missed an exchange after %d: %v", f.addr, ok, err)
		}
		if ok < 50 {
			t.Errorf("%s made %d exchanges, too few to cover the changes", f.addr, ok)
		}
		if got := ctStart(t, e.host, f); got != starts[f] {
			t.Errorf("%s: conntrack entry made again (start %d, was %d): an allowed connection was cut", f.addr, got, starts[f])
		}
		if len(errs) == 0 {
			t.Logf("%s: %d exchanges, none missed", f.addr, ok)
		}
	}
	t.Logf("prober: %d attempts on 7070, none through", attempts)
}

// lineEcho serves TCP in ns at addr: every line a connection sends comes
// straight back, for as long as the connection lives.
func lineEcho(t *testing.T, ns *cnitest.NS, addr string) {
	t.Helper()
	l, err := netns.ListenTCP(ns.Path, addr)
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// loopFlow is one long-lived connection on which a request/response
// exchange runs every 10 ms. The loop stops at the first failed exchange:
// after a timeout the stream is out of step.
type loopFlow struct {
	addr  string
	conn  net.Conn
	local netip.AddrPort
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu       sync.Mutex
	ok       int
	lastOK   time.Time // start of the last successful exchange
	errs     []error
	failedAt time.Time
}

func openFlow(t *testing.T, ns *cnitest.NS, addr string, timeout time.Duration) *loopFlow {
	t.Helper()
	c, err := netns.Dial(ns.Path, "tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	f := &loopFlow{addr: addr, conn: c, local: netip.MustParseAddrPort(c.LocalAddr().String()),
		stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(f.close)
	go f.run(timeout)
	return f
}

func (f *loopFlow) run(timeout time.Duration) {
	defer close(f.done)
	r := bufio.NewReader(f.conn)
	for seq := 0; ; seq++ {
		select {
		case <-f.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		start := time.Now()
		err := f.exchange(r, seq, start.Add(timeout))
		select {
		case <-f.stop:
			return // closed under the exchange: not a miss
		default:
		}
		f.mu.Lock()
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("exchange %d at %s: %w", seq, start.Format("15:04:05.000"), err))
			f.failedAt = start
			f.mu.Unlock()
			return
		}
		f.ok++
		f.lastOK = start
		f.mu.Unlock()
	}
}

func (f *loopFlow) exchange(r *bufio.Reader, seq int, deadline time.Time) error {
	_ = f.conn.SetDeadline(deadline)
	msg := fmt.Sprintf("req-%d\n", seq)
	if _, err := f.conn.Write([]byte(msg)); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg {
		return fmt.Errorf("sent %q, got %q", msg, line)
	}
	return nil
}

// waitOK waits for n successful exchanges.
func (f *loopFlow) waitOK(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		ok, errs := f.ok, f.errs
		f.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f.addr, errs[0])
		}
		if ok >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: fewer than %d exchanges in 5s", f.addr, n)
}

// expectCut checks that the flow failed and that no exchange started
// after the policy was applied succeeded.
func (f *loopFlow) expectCut(t *testing.T, applied time.Time, wait time.Duration) {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(wait):
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastOK.After(applied) {
		t.Errorf("%s: an exchange started %v after the policy forbidding it was applied still got its answer",
			f.addr, f.lastOK.Sub(applied).Round(time.Millisecond))
	}
	if len(f.errs) == 0 {
		t.Errorf("%s: still exchanging %v after the policy forbidding it was applied (%d exchanges)", f.addr, wait, f.ok)
	}
}

func (f *loopFlow) close() {
	f.once.Do(func() {
		close(f.stop)
		f.conn.Close()
		<-f.done
	})
}

// finish stops the loop and returns its successful exchanges and errors.
func (f *loopFlow) finish() (int, []error) {
	f.close()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ok, f.errs
}

// ctStart is the start time of the host's conntrack entry of the flow.
func ctStart(t *testing.T, host *cnitest.NS, f *loopFlow) uint64 {
	t.Helper()
	fam := netlink.InetFamily(unix.AF_INET)
	if f.local.Addr().Is6() {
		fam = unix.AF_INET6
	}
	var start uint64
	found := 0
	err := host.Do(func() error {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return err
		}
		for _, ct := range flows {
			src, _ := netip.AddrFromSlice(ct.Forward.SrcIP)
			if ct.Forward.Protocol == unix.IPPROTO_TCP && src.Unmap() == f.local.Addr() && ct.Forward.SrcPort == f.local.Port() {
				start = ct.TimeStart
				found++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("conntrack of %s: %v", host, err)
	}
	if found != 1 || start == 0 {
		t.Fatalf("conntrack of %s: %d entries with a start time for %s -> %s, want one", host, found, f.local, f.addr)
	}
	return start
}

// prober keeps opening connections to addresses the policy forbids and
// records any that get through.
type prober struct {
	attempts atomic.Int64
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	through  []string
}

func startProber(t *testing.T, ns *cnitest.NS, addrs []string, workers int) *prober {
	p := &prober{stop: make(chan struct{})}
	for i := range workers * len(addrs) {
		addr := addrs[i%len(addrs)]
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case <-p.stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				p.attempts.Add(1)
				c, err := netns.Dial(ns.Path, "tcp", addr, 200*time.Millisecond)
				if err == nil {
					p.mu.Lock()
					p.through = append(p.through, fmt.Sprintf("%s at %s", addr, time.Now().Format("15:04:05.000")))
					p.mu.Unlock()
					c.Close()
				}
			}
		}()
	}
	t.Cleanup(func() { p.finish() })
	return p
}

// finish stops the prober and returns what got through and how many
// connections it tried.
func (p *prober) finish() ([]string, int64) {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.through, p.attempts.Load()
}
