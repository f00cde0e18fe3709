package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	got := testMatrix()
	if d := Diff(got, got); len(d) != 0 {
		t.Fatalf("Diff(m, m) = %v", d)
	}
	want := Expected(got, AllowAll)
	d := Diff(got, want)
	if len(d) != 2 {
		t.Fatalf("Diff = %v, want 2 mismatches", d)
	}
	if d[0].Src != "b" || d[0].Dst != "a" || d[0].Want != OK || d[0].Got != Timeout {
		t.Errorf("first mismatch = %+v", d[0])
	}
	if s := d[1].String(); s != "b -> host-gw: want ok, got refused" {
		t.Errorf("mismatch text = %q", s)
	}

	// A cell expected but never probed (its row is missing) is a mismatch.
	bigger := NewMatrix(append(got.Rows[:2:2], Endpoint{Name: "c"}), got.Cols)
	bigger = Expected(bigger, AllowAll)
	missing := 0
	for _, x := range Diff(got, bigger) {
		if x.Src == "c" {
			missing++
			if x.Got != Skip {
				t.Errorf("missing cell reported as %v", x.Got)
			}
		}
	}
	if missing != len(got.Cols) {
		t.Errorf("got %d mismatches for the missing row, want %d", missing, len(got.Cols))
	}
}

func TestExpectedKeepsDiagonal(t *testing.T) {
	e := Expected(testMatrix(), AllowAll)
	if o, _ := e.At("a", "a"); o != Skip {
		t.Errorf("a->a = %v, want Skip", o)
	}
	if o, _ := e.At("a", GatewayName); o != OK {
		t.Errorf("a->host-gw = %v, want ok", o)
	}
	if _, ok := e.At("a", "nope"); ok {
		t.Error("At found a column that does not exist")
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Outcome
	}{
		{nil, OK},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, Refused},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, Unreachable},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, Unreachable},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), Timeout},
		{context.DeadlineExceeded, Timeout},
		{errors.New("something else"), Failed},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestProberLoopback probes listeners on loopback addresses of the current
// namespace, which needs no privileges: each outcome but "unreach" is
// produced for real.
func TestProberLoopback(t *testing.T) {
	a := listenLoop(t, "127.0.0.1", 0)
	port := a.Addr().(*net.TCPAddr).Port
	go Greeter(a, "a")
	b := listenLoop(t, "127.0.0.2", port)
	go Greeter(b, "impostor")
	c := listenLoop(t, "127.0.0.3", port) // accepts but never greets
	_ = c

	ep := func(name, ip string) Endpoint {
		return Endpoint{Name: name, Addr: netip.MustParseAddr(ip), Gateway: netip.MustParseAddr("127.0.0.1")}
	}
	src := ep("src", "127.0.0.9")
	cols := []Endpoint{
		ep("a", "127.0.0.1"),
		ep("b", "127.0.0.2"),
		ep("c", "127.0.0.3"),
		ep("d", "127.0.0.4"), // nobody listens
		{Name: GatewayName, IsGateway: true},
	}
	m := Prober{Port: port, DialTimeout: 300 * time.Millisecond}.Probe(context.Background(), []Endpoint{src}, cols)
	want := map[string]Outcome{"a": OK, "b": WrongPeer, "c": Timeout, "d": Refused}
	for name, w := range want {
		if got, _ := m.At("src", name); got != w {
			t.Errorf("src -> %s = %v, want %v (%s)", name, got, w, m.Cells[0][indexOf(cols, name)].Err)
		}
	}
	// The gateway column dials the source's gateway, where "a" listens and
	// greets with the wrong name for a gateway.
	if got, _ := m.At("src", GatewayName); got != WrongPeer {
		t.Errorf("src -> host-gw = %v, want wrong", got)
	}
}

func listenLoop(t *testing.T, ip string, port int) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func indexOf(eps []Endpoint, name string) int {
	for i, e := range eps {
		if e.Name == name {
			return i
		}
	}
	return -1
}
