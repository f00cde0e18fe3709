//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/test/cnitest"
)

// Traffic that lasts: long-lived connections with a request/response
// loop, and a prober of connections that must never open.

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
