//go:build linux

package netdelay

import (
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/test/cnitest"
)

// pair is two fresh namespaces joined by a veth pair, with a one-byte TCP
// echo listening in b.
type pair struct {
	a, b         *cnitest.NS
	vethA, vethB string
	ipA, ipB     netip.Addr
	echo         string // ip:port in b
}

func newPair(t *testing.T) *pair {
	t.Helper()
	cnitest.RequireRoot(t)
	p := &pair{a: cnitest.NewNS(t, "znd-a"), b: cnitest.NewNS(t, "znd-b")}
	sub := cnitest.Subnet4(t)
	p.ipA, p.ipB = cnitest.Nth(sub, 1), cnitest.Nth(sub, 2)
	p.vethA, p.vethB = cnitest.Connect(t, p.a, netip.PrefixFrom(p.ipA, 24).String(), p.b, netip.PrefixFrom(p.ipB, 24).String())
	p.echo = cnitest.ServeTCP(t, p.b, netip.AddrPortFrom(p.ipB, 0).String(), func(c net.Conn) {
		_, _ = io.CopyBuffer(c, c, make([]byte, 1))
	})
	return p
}

// rtts makes n one-byte round trips from a to b on one connection, after
// two unmeasured ones, and returns them sorted.
func (p *pair) rtts(t *testing.T, n int) []time.Duration {
	t.Helper()
	c, err := netns.Dial(p.a.Path, "tcp", p.echo, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", p.echo, p.a.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Duration(n+2) * time.Second))
	b := []byte{'x'}
	var out []time.Duration
	for i := 0; i < n+2; i++ {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if i >= 2 {
			out = append(out, time.Since(t0))
		}
	}
	slices.Sort(out)
	return out
}

func median(d []time.Duration) time.Duration { return d[len(d)/2] }

// fast is the most a round trip over a veth pair may take on a busy
// machine; it is tens of microseconds when idle.
const fast = 20 * time.Millisecond

// leftovers returns the stacks of goroutines still running delayer code.
func leftovers() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "netdelay.(*Delayer)") {
			out = append(out, g)
		}
	}
	return out
}

func TestDelayOneWay(t *testing.T) {
	p := newPair(t)
	before := p.rtts(t, 20)
	if m := median(before); m > fast {
		t.Fatalf("round trip before the delay: median %v, want < %v", m, fast)
	}

	m := Match{Chain: "OUTPUT", Out: p.vethA}
	d, err := StartWith(p.a.Path, m, Options{Delay: 80 * time.Millisecond, Tag: "oneway"})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = d.Stop()
		}
	})
	if ok, err := RuleExists(p.a.Path, m, d.Queue(), "oneway"); err != nil || !ok {
		t.Fatalf("rule of queue %d in %s: present %v, %v", d.Queue(), p.a.Name, ok, err)
	}
	delayed := p.rtts(t, 20)
	t.Logf("median rtt: %v undelayed, %v with 80ms one way (min %v, max %v); %+v",
		median(before), median(delayed), delayed[0], delayed[len(delayed)-1], d.Stats())
	if md := median(delayed); md < 75*time.Millisecond || md > 200*time.Millisecond {
		t.Errorf("round trip with an 80ms delay one way: median %v, want 75-200ms", md)
	}
	if delayed[0] < 79*time.Millisecond {
		t.Errorf("fastest delayed round trip %v: a packet skipped the delay", delayed[0])
	}
	if s := d.Stats(); s.Packets < 20 || s.Verdicts != 0 {
		t.Errorf("stats %+v: want at least one delayed packet per round trip and no failed verdict", s)
	}

	stopped = true
	if err := d.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if ok, err := RuleExists(p.a.Path, m, d.Queue(), "oneway"); err != nil || ok {
		t.Errorf("rule after stop: present %v, %v", ok, err)
	}
	if g := leftovers(); len(g) > 0 {
		t.Errorf("goroutines left after stop:\n%s", strings.Join(g, "\n\n"))
	}
	if after := median(p.rtts(t, 20)); after > fast {
		t.Errorf("round trip after stop: median %v, want < %v", after, fast)
	}
}

// A rule that selects nothing of the exchange delays nothing: the match
// is what decides, not the mere presence of a queue.
func TestDelayOnlyMatched(t *testing.T) {
	p := newPair(t)
	other := netip.PrefixFrom(p.ipB.Next(), 32)
	d := StartT(t, p.a.Path, Match{Chain: "OUTPUT", Dst: other}, Options{Delay: 80 * time.Millisecond})
	if md := median(p.rtts(t, 10)); md > fast {
		t.Errorf("round trip with a delay for %s only: median %v, want < %v", other, md, fast)
	}
	if s := d.Stats(); s.Packets != 0 {
		t.Errorf("%d packets delayed, want none", s.Packets)
	}
}

// With jitter the delays spread, and TCP still sees its bytes in order
// (a reordered echo would show as a wrong byte or a stall).
func TestJitter(t *testing.T) {
	p := newPair(t)
	StartT(t, p.b.Path, Match{Chain: "POSTROUTING", Out: p.vethB}, Options{Delay: 40 * time.Millisecond, Jitter: 15 * time.Millisecond, Seed: 7})
	r := p.rtts(t, 20)
	t.Logf("rtt with 40±15ms on the way back: min %v median %v max %v", r[0], median(r), r[len(r)-1])
	if r[0] < 24*time.Millisecond {
		t.Errorf("fastest round trip %v, below the smallest delay (25ms)", r[0])
	}
	if spread := r[len(r)-1] - r[0]; spread < 5*time.Millisecond {
		t.Errorf("round trips spread over %v only: no jitter", spread)
	}
	if md := median(r); md > 150*time.Millisecond {
		t.Errorf("median round trip %v, want about 40ms", md)
	}
}

// A delayer that dies (its socket closed, the rule left behind) must not
// cut the path: --queue-bypass lets packets through while nothing is bound.
func TestDeadDelayerBypasses(t *testing.T) {
	p := newPair(t)
	m := Match{Out: p.vethA}
	d := StartT(t, p.a.Path, m, Options{Delay: 80 * time.Millisecond, Tag: "dies"})
	if md := median(p.rtts(t, 5)); md < 75*time.Millisecond {
		t.Fatalf("delayer not delaying before it dies: median %v", md)
	}
	_ = d.closeConn()
	if ok, err := RuleExists(p.a.Path, m, d.Queue(), "dies"); err != nil || !ok {
		t.Fatalf("rule after the socket closed: present %v, %v (the test needs it left)", ok, err)
	}
	if md := median(p.rtts(t, 10)); md > fast {
		t.Errorf("round trip through the rule of a dead delayer: median %v, want < %v", md, fast)
	}
}

// Two delayers in one namespace get different queues, and both delay.
func TestTwoDelayers(t *testing.T) {
	p := newPair(t)
	d1 := StartT(t, p.a.Path, Match{Out: p.vethA}, Options{Delay: 30 * time.Millisecond})
	d2 := StartT(t, p.a.Path, Match{Chain: "PREROUTING", In: p.vethA}, Options{Delay: 30 * time.Millisecond})
	if d1.Queue() == d2.Queue() {
		t.Fatalf("both delayers on queue %d", d1.Queue())
	}
	if md := median(p.rtts(t, 10)); md < 58*time.Millisecond || md > 200*time.Millisecond {
		t.Errorf("round trip with 30ms each way: median %v, want 60ms and a little", md)
	}
	if _, err := StartWith(p.a.Path, Match{Out: p.vethA}, Options{Queue: d1.Queue()}); err == nil {
		t.Error("a third delayer bound a queue that is taken")
	}
}

func TestStartRejects(t *testing.T) {
	p := newPair(t)
	if _, err := StartWith(p.a.Path, Match{Chain: "OUTPUT"}, Options{Delay: time.Millisecond}); err == nil {
		t.Error("a match that selects everything was accepted")
	}
	if _, err := StartWith(p.a.Path, Match{Out: p.vethA}, Options{Delay: -time.Millisecond}); err == nil {
		t.Error("a negative delay was accepted")
	}
	if _, err := Start("/run/netns/znd-does-not-exist", Match{Out: "x"}, time.Millisecond); err == nil {
		t.Error("a missing namespace was accepted")
	}
	// A rule that cannot be added (no iptables on PATH) fails Start
	// after the queue is bound and the goroutines run: they must go.
	t.Setenv("PATH", t.TempDir())
	if _, err := StartWith(p.a.Path, Match{Out: p.vethA}, Options{Delay: time.Millisecond}); err == nil {
		t.Error("start without iptables succeeded")
	}
	if g := leftovers(); len(g) > 0 {
		t.Errorf("goroutines left after failed starts:\n%s", strings.Join(g, "\n\n"))
	}
}
