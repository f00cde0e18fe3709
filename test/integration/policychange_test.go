//go:build linux

package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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
