package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/netns"
)

// GatewayName is the target that stands for the host side of a source's own
// zone: the bridge gateway address, answered by a listener in the host
// namespace.
const GatewayName = "host-gw"

// Outcome is what one TCP connect attempt observed.
type Outcome int

const (
	Skip        Outcome = iota // not probed (a container and itself)
	OK                         // connected, and the expected peer answered
	Refused                    // RST or ICMP port unreachable
	Timeout                    // no answer within the dial timeout
	Unreachable                // ICMP host/net unreachable or no route
	WrongPeer                  // connected, but someone else answered
	Failed                     // anything else (see Cell.Err)
)

var outcomeNames = [...]string{"-", "ok", "refused", "timeout", "unreach", "wrong", "error"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Endpoint is a row or column of the matrix.
type Endpoint struct {
	Name string
	Zone string
	// Netns is the path of the namespace connects start from (sources);
	// empty means the caller's namespace.
	Netns string
	// Addr is where the endpoint listens (containers).
	Addr netip.Addr
	// Gateway is the source's zone gateway, dialled for the GatewayName
	// column.
	Gateway netip.Addr
	// IsGateway marks the GatewayName column.
	IsGateway bool
}

// Cell is one probe: Rows[i] connecting to Cols[j].
type Cell struct {
	Outcome Outcome
	Err     string
	RTT     time.Duration // connect time when OK
}

// Matrix is a reachability truth table. Observed and expected matrices have
// the same shape so they can be compared cell by cell with Diff.
type Matrix struct {
	Rows  []Endpoint
	Cols  []Endpoint
	Cells [][]Cell
}

// NewMatrix returns a matrix of rows × cols with every cell Skip.
func NewMatrix(rows, cols []Endpoint) Matrix {
	m := Matrix{Rows: rows, Cols: cols, Cells: make([][]Cell, len(rows))}
	for i := range m.Cells {
		m.Cells[i] = make([]Cell, len(cols))
	}
	return m
}

// At returns the outcome from row src to column dst, by name.
func (m Matrix) At(src, dst string) (Outcome, bool) {
	for i, r := range m.Rows {
		if r.Name != src {
			continue
		}
		for j, c := range m.Cols {
			if c.Name == dst {
				return m.Cells[i][j].Outcome, true
			}
		}
	}
	return Skip, false
}

// Policy says what one connect should observe.
type Policy func(src, dst Endpoint) Outcome

// AllowAll is today's expectation: with no ACL layer every container
// reaches every other container and its gateway.
func AllowAll(src, dst Endpoint) Outcome { return OK }

// Expected builds the matrix a policy predicts, shaped like m. The diagonal
// stays Skip.
func Expected(m Matrix, p Policy) Matrix {
	e := NewMatrix(m.Rows, m.Cols)
	for i, r := range m.Rows {
		for j, c := range m.Cols {
			if r.Name == c.Name {
				continue
			}
			e.Cells[i][j].Outcome = p(r, c)
		}
	}
	return e
}

// Mismatch is one cell where observation and expectation differ.
type Mismatch struct {
	Src, Dst  string
	Want, Got Outcome
	Err       string
}

func (m Mismatch) String() string {
	s := fmt.Sprintf("%s -> %s: want %s, got %s", m.Src, m.Dst, m.Want, m.Got)
	if m.Err != "" {
		s += " (" + m.Err + ")"
	}
	return s
}

// Diff compares two matrices cell by cell, matching rows and columns by
// name. A row or column present in only one of them is a mismatch against
// Skip.
func Diff(got, want Matrix) []Mismatch {
	var out []Mismatch
	seen := map[[2]string]bool{}
	for i, r := range got.Rows {
		for j, c := range got.Cols {
			seen[[2]string{r.Name, c.Name}] = true
			w, _ := want.At(r.Name, c.Name)
			g := got.Cells[i][j]
			if g.Outcome != w {
				out = append(out, Mismatch{Src: r.Name, Dst: c.Name, Want: w, Got: g.Outcome, Err: g.Err})
			}
		}
	}
	for i, r := range want.Rows {
		for j, c := range want.Cols {
			if w := want.Cells[i][j].Outcome; !seen[[2]string{r.Name, c.Name}] && w != Skip {
				out = append(out, Mismatch{Src: r.Name, Dst: c.Name, Want: w, Got: Skip})
			}
		}
	}
	return out
}

// Prober fills a matrix with real TCP connects.
type Prober struct {
	Port        int
	DialTimeout time.Duration
	// Parallel bounds the connects in flight; zero means 16.
	Parallel int
}

// Probe connects from every row to every column (except itself) and
// returns the observed matrix. Each listener is expected to greet with its
// endpoint name, so a connect that lands on the wrong peer is caught.
func (p Prober) Probe(ctx context.Context, rows, cols []Endpoint) Matrix {
	m := NewMatrix(rows, cols)
	par := p.Parallel
	if par <= 0 {
		par = 16
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, r := range rows {
		for j, c := range cols {
			if r.Name == c.Name {
				continue
			}
			target := c.Addr
			if c.IsGateway {
				target = r.Gateway
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				if ctx.Err() != nil {
					m.Cells[i][j] = Cell{Outcome: Failed, Err: "interrupted"}
					return
				}
				m.Cells[i][j] = p.probe(r.Netns, target, c.Name)
			}()
		}
	}
	wg.Wait()
	return m
}

func (p Prober) probe(nsPath string, addr netip.Addr, want string) Cell {
	if !addr.IsValid() {
		return Cell{Outcome: Failed, Err: "no address"}
	}
	timeout := p.DialTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	start := time.Now()
	dst := netip.AddrPortFrom(addr, uint16(p.Port)).String()
	var conn net.Conn
	var err error
	if nsPath == "" {
		conn, err = net.DialTimeout("tcp", dst, timeout)
	} else {
		conn, err = netns.Dial(nsPath, "tcp", dst, timeout)
	}
	if err != nil {
		return Cell{Outcome: Classify(err), Err: shortErr(err)}
	}
	rtt := time.Since(start)
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	n, err := io.ReadFull(conn, buf[:len(want)+1])
	got := strings.TrimSpace(string(buf[:n]))
	if err != nil && got == "" {
		return Cell{Outcome: Classify(err), Err: "read greeting: " + shortErr(err)}
	}
	if got != want {
		return Cell{Outcome: WrongPeer, Err: fmt.Sprintf("answered by %q", got)}
	}
	return Cell{Outcome: OK, RTT: rtt}
}

// Classify maps a dial or read error to an Outcome.
func Classify(err error) Outcome {
	var ne net.Error
	switch {
	case err == nil:
		return OK
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return Refused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Unreachable
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return Timeout
	}
	return Failed
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		return s[i+2:]
	}
	return s
}

// Greeter serves each accepted connection a single line with its name and
// closes it. It returns when the listener is closed.
func Greeter(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.WriteString(c, name+"\n")
		_ = c.Close()
	}
}
