package demo

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/netns"
)

// rttResult is the round trip between two nodes, measured between one
// container on each.
type rttResult struct {
	from, to *Node
	src, dst *Container
	oneWay   time.Duration
	connect  time.Duration   // the TCP handshake: one round trip
	samples  []time.Duration // request/response exchanges
	err      error
}

// rttPort is the first port tried for the echo servers; it moves up past
// the matrix's ports.
const rttPort = 7070

// measureRTT runs an echo server in one container of the default zone on
// each node and, for every pair of nodes, opens one connection and times
// exchanges request/response on it. The pairs run one after the other so
// that they do not queue behind each other. A round trip shorter than
// twice the configured one-way delay means the delay is not in effect,
// which is an error.
func (c *Cluster) measureRTT(ctx context.Context, exchanges int) []rttResult {
	port := rttPort
	for slices.Contains(c.ports(), port) {
		port++
	}
	ends := map[*Node]*Container{}
	for _, n := range c.Nodes {
		for _, x := range n.Demo.Containers {
			if x.Zone == c.topo.DefaultZone && x.Err == nil && x.IP.IsValid() {
				ends[n] = x
				break
			}
		}
	}
	var out []rttResult
	for i, a := range c.Nodes {
		for _, b := range c.Nodes[i+1:] {
			r := rttResult{from: a, to: b, src: ends[a], dst: ends[b], oneWay: c.oneWay(a.Name, b.Name)}
			switch {
			case r.src == nil || r.dst == nil:
				r.err = fmt.Errorf("no container of zone %s on both nodes", c.topo.DefaultZone)
			case !c.allows(r.src, r.dst, port):
				r.err = fmt.Errorf("the policy denies %s -> %s port %d", r.src.Name, r.dst.Name, port)
			case ctx.Err() != nil:
				r.err = ctx.Err()
			default:
				r.exchange(port, exchanges)
			}
			out = append(out, r)
		}
	}
	return out
}

func (c *Cluster) allows(src, dst *Container, port int) bool {
	if c.policy == nil {
		return true
	}
	ok, _ := c.policy.Allows(conf.Flow{Src: src.IP.Addr(), Dst: dst.IP.Addr(), Proto: conf.ProtoTCP, DstPort: uint16(port)})
	return ok
}

// exchange serves echo in r.dst for the time of the measurement and times
// the connect and each exchange from r.src.
func (r *rttResult) exchange(port, n int) {
	addr := netip.AddrPortFrom(r.dst.IP.Addr(), uint16(port)).String()
	l, err := netns.ListenTCP(r.dst.NetnsPath, addr)
	if err != nil {
		r.err = fmt.Errorf("listen in %s: %w", r.dst.Name, err)
		return
	}
	defer l.Close()
	go echo(l)

	// Above every round trip the delays make, with room for a lost SYN.
	timeout := 3*time.Second + 4*r.oneWay
	start := time.Now()
	conn, err := netns.Dial(r.src.NetnsPath, "tcp", addr, timeout)
	if err != nil {
		r.err = fmt.Errorf("connect %s -> %s: %w", r.src.Name, addr, err)
		return
	}
	r.connect = time.Since(start)
	defer conn.Close()
	rd := bufio.NewReader(conn)
	for i := range n {
		_ = conn.SetDeadline(time.Now().Add(timeout))
		req := "ping " + strconv.Itoa(i) + "\n"
		start := time.Now()
		if _, err := conn.Write([]byte(req)); err != nil {
			r.err = err
			return
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			r.err = fmt.Errorf("exchange %d: %w", i, err)
			return
		}
		if line != req {
			r.err = fmt.Errorf("exchange %d: answer %q", i, line)
			return
		}
		r.samples = append(r.samples, time.Since(start))
	}
	if lo, _, _ := spread(append(r.samples, r.connect)); lo < 2*r.oneWay {
		r.err = fmt.Errorf("round trip %s is shorter than twice the one-way delay %s: the delay is not in effect", lo, r.oneWay)
	}
}

// echo sends every line back on its connection until the listener is
// closed.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			rd := bufio.NewReader(c)
			for {
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				line, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte(line)); err != nil {
					return
				}
			}
		}()
	}
}

// spread returns the minimum, median and maximum of ds.
func spread(ds []time.Duration) (lo, med, hi time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}
