//go:build linux

package multinode

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/test/cnitest"
)

// tctr is a container attached by the real plugin on one node.
type tctr struct {
	name string // node-zone-i, the tag its servers answer with
	node *tnode
	zone string
	ns   *cnitest.NS
	id   string
	ip   netip.Addr
}

// addCtr runs the zonenet plugin's ADD inside the node for a new
// container namespace in zone; a first container in a zone makes the
// plugin ask zonenetd for a block.
func (n *tnode) addCtr(zone string) *tctr {
	t := n.c.t
	t.Helper()
	x := &tctr{node: n, zone: zone, ns: cnitest.NewNS(t, "znt-mnctr"),
		name: fmt.Sprintf("%s-%s-%d", n.name, zone, len(n.ctrs)+1)}
	x.id = "ctr-" + cnitest.Unique(t, "")
	out := cnitest.MustExec(t, cnitest.Call{
		Bin: n.c.bins.Zonenet, Command: "ADD", ContainerID: x.id, Netns: x.ns.Path, IfName: "eth0",
		Args: "ZONE=" + zone, Config: n.plugin, InNetns: n.ns.Path,
	})
	res := cnitest.ParseResult(t, cniVer, out)
	for _, ip := range res.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok && a.Unmap().Is4() {
			x.ip = a.Unmap()
		}
	}
	if !n.c.subnets[zone].Contains(x.ip) {
		t.Fatalf("ADD on %s in zone %s: address %v outside %s:\n%s", n.name, zone, x.ip, n.c.subnets[zone], out)
	}
	n.ctrs = append(n.ctrs, x)
	return x
}

// tryAdd runs ADD for a new container in zone and returns the plugin's
// output or its CNI error, without failing the test.
func (n *tnode) tryAdd(zone string) ([]byte, *types.Error) {
	t := n.c.t
	t.Helper()
	ns := cnitest.NewNS(t, "znt-mnctr")
	return cnitest.Exec(t, cnitest.Call{
		Bin: n.c.bins.Zonenet, Command: "ADD", ContainerID: "ctr-" + cnitest.Unique(t, ""), Netns: ns.Path,
		IfName: "eth0", Args: "ZONE=" + zone, Config: n.plugin, InNetns: n.ns.Path,
	})
}

// serve answers, on port, every line of every connection with the
// container's name and the line, until the test ends: a request/response
// server for long-lived probes and one-shot connects alike.
func (x *tctr) serve(t *testing.T, port int) {
	t.Helper()
	cnitest.ServeTCP(t, x.ns, netip.AddrPortFrom(x.ip, uint16(port)).String(), func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(c, "%s:%s", x.name, line); err != nil {
				return
			}
		}
	})
}

// talk connects from x to addr, sends one line and returns the tag of the
// answer.
func (x *tctr) talk(addr string, timeout time.Duration) (string, error) {
	c, err := netns.Dial(x.ns.Path, "tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "hello\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	tag, _, _ := strings.Cut(line, ":")
	return tag, nil
}

// probe exchanges requests and responses between two containers without
// pause: on one long-lived connection, and every fifth exchange on a new
// connection (a new flow meets the ACL's first-packet checks and
// conntrack afresh). An exchange that does not complete within the
// deadline is lost.
type probe struct {
	from, to *tctr
	deadline time.Duration
	ok, lost atomic.Int64
	maxRTT   atomic.Int64
	mu       sync.Mutex
	errs     []string
	slow     []string
	stop     chan struct{}
	once     sync.Once
	done     chan struct{}
}

const probePort = 7000

// slowRTT is an exchange worth reporting: far above the few milliseconds
// an exchange takes, though within the deadline.
const slowRTT = 200 * time.Millisecond

func startProbe(t *testing.T, from, to *tctr) *probe {
	p := &probe{from: from, to: to, deadline: time.Second, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	// A test that fails early does not reach finish: stop it anyway.
	t.Cleanup(p.halt)
	return p
}

// halt stops the probe; stopping it twice is fine.
func (p *probe) halt() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

func (p *probe) run() {
	defer close(p.done)
	addr := netip.AddrPortFrom(p.to.ip, probePort).String()
	var conn net.Conn
	var r *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for seq := 0; ; seq++ {
		select {
		case <-p.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		start := time.Now()
		var err error
		if seq%5 == 4 {
			var tag string
			tag, err = p.from.talk(addr, p.deadline)
			if err == nil && tag != p.to.name {
				err = fmt.Errorf("answered by %s", tag)
			}
		} else {
			if conn == nil {
				if conn, err = netns.Dial(p.from.ns.Path, "tcp", addr, p.deadline); err == nil {
					r = bufio.NewReader(conn)
				}
			}
			if err == nil {
				err = exchange(conn, r, seq, p.deadline)
				if err != nil {
					conn.Close()
					conn = nil
				}
			}
		}
		if err != nil {
			p.lost.Add(1)
			p.mu.Lock()
			p.errs = append(p.errs, fmt.Sprintf("%s: exchange %d: %v", time.Now().Format("15:04:05.000"), seq, err))
			p.mu.Unlock()
			continue
		}
		p.ok.Add(1)
		rtt := time.Since(start)
		if int64(rtt) > p.maxRTT.Load() {
			p.maxRTT.Store(int64(rtt))
		}
		if rtt > slowRTT {
			p.mu.Lock()
			p.slow = append(p.slow, fmt.Sprintf("%s: exchange %d (new connection: %v) took %s", start.Format("15:04:05.000"), seq, seq%5 == 4, rtt.Round(time.Millisecond)))
			p.mu.Unlock()
		}
	}
}

func exchange(c net.Conn, r *bufio.Reader, seq int, deadline time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(deadline))
	if _, err := fmt.Fprintf(c, "req %d\n", seq); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasSuffix(line, fmt.Sprintf("req %d\n", seq)) {
		return fmt.Errorf("answer %q to request %d", line, seq)
	}
	return nil
}

// finish stops the probe and fails the test if an exchange was lost or
// none happened.
func (p *probe) finish(t *testing.T) {
	t.Helper()
	p.halt()
	ok, lost := p.ok.Load(), p.lost.Load()
	t.Logf("probe %s -> %s: %d exchanges, %d lost, max RTT %s", p.from.name, p.to.name, ok, lost,
		time.Duration(p.maxRTT.Load()).Round(time.Microsecond))
	if len(p.slow) > 0 {
		t.Logf("slow exchanges:\n%s", strings.Join(p.slow, "\n"))
	}
	if lost > 0 {
		t.Errorf("probe %s -> %s lost %d of %d exchanges:\n%s", p.from.name, p.to.name, lost, ok+lost, strings.Join(p.errs, "\n"))
	}
	if ok < 10 {
		t.Errorf("probe %s -> %s made only %d exchanges", p.from.name, p.to.name, ok)
	}
}
