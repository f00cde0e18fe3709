//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/netns"
)

// The load generator: a sink that counts what it receives and reports the
// total when the sender is done, and an echo of one byte for round trips.

const (
	sinkPort = 5201
	echoPort = 5202
)

// servers listens in the server namespace; close stops them.
type servers struct{ sink, echo net.Listener }

func serve(nsPath string, addr netip.Addr) (*servers, error) {
	sink, err := netns.ListenTCP(nsPath, netip.AddrPortFrom(addr, sinkPort).String())
	if err != nil {
		return nil, err
	}
	echo, err := netns.ListenTCP(nsPath, netip.AddrPortFrom(addr, echoPort).String())
	if err != nil {
		sink.Close()
		return nil, err
	}
	go accept(sink, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		_ = binary.Write(c, binary.BigEndian, uint64(n))
	})
	go accept(echo, func(c net.Conn) {
		b := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	})
	return &servers{sink: sink, echo: echo}, nil
}

func (s *servers) close() { s.sink.Close(); s.echo.Close() }

func accept(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

// cpuTime is the CPU time this process has used, user and system. Sender
// and sink both run here, and a veth hands packets on in the softirq of
// the sending CPU, so most of the path's kernel work is charged to it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bulk sends for d from the client namespace and returns the goodput the
// sink counted, in Gbit/s (bytes the receiver got over the time from the
// first write to the receiver's report), and the same bits per second of
// this process's CPU time: a figure that moves less than the goodput when
// other work competes for the CPUs.
func bulk(client string, dst netip.Addr, d time.Duration) (gbps, perCPU float64, err error) {
	c, err := netns.Dial(client, "tcp", netip.AddrPortFrom(dst, sinkPort).String(), 3*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	cpu0 := cpuTime()
	start := time.Now()
	_ = c.SetDeadline(start.Add(d + 10*time.Second))
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			return 0, 0, fmt.Errorf("send: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, 0, err
	}
	var n uint64
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		return 0, 0, fmt.Errorf("read the sink's count: %w", err)
	}
	bits := float64(n) * 8 / 1e9
	return bits / time.Since(start).Seconds(), bits / (cpuTime() - cpu0).Seconds(), nil
}

// rtts makes n one-byte round trips on one connection (Nagle is off in Go)
// after a few unmeasured ones, and returns them in microseconds, sorted.
func rtts(client string, dst netip.Addr, n int) ([]float64, error) {
	c, err := netns.Dial(client, "tcp", netip.AddrPortFrom(dst, echoPort).String(), 3*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Duration(n)*10*time.Millisecond + 10*time.Second))
	b := []byte{'x'}
	out := make([]float64, 0, n)
	for i := 0; i < n+50; i++ {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return nil, err
		}
		if i >= 50 {
			out = append(out, float64(time.Since(t0).Nanoseconds())/1e3)
		}
	}
	slices.Sort(out)
	return out, nil
}

// quantile of sorted samples, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// check makes one short exchange, so a broken path fails loudly before
// it is measured.
func check(s setup) error {
	r, err := rtts(s.client, s.dst, 3)
	if err != nil {
		return fmt.Errorf("%s: no round trip to %s: %w", s.name, s.dst, err)
	}
	if len(r) != 3 {
		return errors.New("short round trip")
	}
	return nil
}
