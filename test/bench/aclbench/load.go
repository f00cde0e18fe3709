//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The first byte a client sends picks what the server does with the
// connection.
const (
	modeStream  = 's' // read until EOF, then answer the byte count
	modeConnect = 'c' // answer one byte, then wait for the client to close
)

// serveCmd runs in the backend namespace. It exits when its stdin closes,
// so it never outlives the driver that started it, even one killed with
// SIGKILL.
func serveCmd(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Println("ready")
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go serveConn(c)
	}
}

func serveConn(c net.Conn) {
	defer c.Close()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case modeStream:
		n, _ := io.Copy(io.Discard, c)
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		_, _ = c.Write(b[:])
	case modeConnect:
		if _, err := c.Write([]byte{'k'}); err != nil {
			return
		}
		// The client closes first, so TIME_WAIT stays on its side, where
		// tcp_tw_reuse lets the next connect take the port again.
		_, _ = io.Copy(io.Discard, c)
	}
}

// loadCmd runs in the frontend namespace and prints one JSON record.
func loadCmd(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	mode := fs.String("mode", "", "stream (bulk send), connect (connect/1-byte exchange/close loops) or probe (one connect)")
	to := fs.String("to", "", "server address, IP:PORT")
	dur := fs.Duration("dur", 4*time.Second, "how long to send or loop")
	conc := fs.Int("conc", 4, "connect: loops in parallel")
	timeout := fs.Duration("timeout", 2*time.Second, "connect timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("load: -to is required")
	}
	switch *mode {
	case "stream":
		mbps, err := stream(*to, *dur, *timeout)
		if err != nil {
			return err
		}
		return emit(record{Kind: "stream", Mbps: mbps})
	case "connect":
		n, secs, err := connectLoops(*to, *dur, *conc, *timeout)
		if err != nil {
			return err
		}
		return emit(record{Kind: "connect", Conns: n, PerSec: float64(n) / secs})
	case "probe":
		// A blocked port times out; one the policy lets through answers,
		// with a refusal at least when nothing listens.
		c, err := net.DialTimeout("tcp", *to, *timeout)
		switch {
		case err == nil:
			c.Close()
			fmt.Println("open")
		case errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
			fmt.Println("blocked")
		default:
			fmt.Println("refused")
		}
		return nil
	}
	return fmt.Errorf("load: -mode %q: want stream, connect or probe", *mode)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stream sends for dur and returns the rate the server received, from the
// first byte sent to the server's count coming back.
func stream(to string, dur, timeout time.Duration) (float64, error) {
	c, err := net.DialTimeout("tcp", to, timeout)
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dur + 30*time.Second))
	t0 := time.Now()
	if _, err := c.Write([]byte{modeStream}); err != nil {
		return 0, fmt.Errorf("stream: send: %w", err)
	}
	buf := make([]byte, 128<<10)
	for end := t0.Add(dur); time.Now().Before(end); {
		if _, err := c.Write(buf); err != nil {
			return 0, fmt.Errorf("stream: send: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, fmt.Errorf("stream: close write: %w", err)
	}
	var nb [8]byte
	if _, err := io.ReadFull(c, nb[:]); err != nil {
		return 0, fmt.Errorf("stream: read the server's count: %w", err)
	}
	secs := time.Since(t0).Seconds()
	return float64(binary.BigEndian.Uint64(nb[:])) * 8 / secs / 1e6, nil
}

// connectLoops runs conc loops of connect, one byte each way, close, for
// dur. Every connection is a new conntrack entry, so each one's SYN walks
// the host's chains from the top; a failed exchange fails the run.
func connectLoops(to string, dur time.Duration, conc int, timeout time.Duration) (int, float64, error) {
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	var stop atomic.Bool
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(dur)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && time.Now().Before(end) {
				if err := exchange(to, timeout); err != nil {
					once.Do(func() { firstErr = err })
					stop.Store(true)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	if firstErr != nil {
		return 0, 0, fmt.Errorf("connect loop failed after %d exchanges: %w", n.Load(), firstErr)
	}
	return int(n.Load()), secs, nil
}

func exchange(to string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", to, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{modeConnect}); err != nil {
		return err
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return err
}
