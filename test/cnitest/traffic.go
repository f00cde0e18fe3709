//go:build linux

package cnitest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zonenet/zonenet/netns"
)

// EchoTCP serves TCP in the namespace at addr ("IP:port", port 0 picks
// one): each connection gets back the first line it sends, prefixed with
// tag. It returns the address it listens on; the listener closes when the
// test ends.
func EchoTCP(t testing.TB, ns *NS, addr, tag string) string {
	t.Helper()
	return ServeTCP(t, ns, addr, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, tag+":"+line)
	})
}

// ServeTCP listens in the namespace at addr and hands each connection to
// handle on its own goroutine, closing it afterwards; the listener closes
// when the test ends. It returns the address it listens on.
func ServeTCP(t testing.TB, ns *NS, addr string, handle func(net.Conn)) string {
	t.Helper()
	l, err := netns.ListenTCP(ns.Path, addr)
	if err != nil {
		t.Fatalf("listen tcp %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
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
	}()
	return l.Addr().String()
}

// EchoUDP answers every datagram in the namespace with tag + ":" + payload.
func EchoUDP(t testing.TB, ns *NS, addr, tag string) string {
	t.Helper()
	pc, err := netns.ListenUDP(ns.Path, addr)
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte(tag+":"), buf[:n]...), from)
		}
	}()
	return pc.LocalAddr().String()
}

var msgSeq atomic.Uint64

// TalkTCP connects from the namespace to addr, sends a line and returns
// the tag the echo server answered with.
func TalkTCP(ns *NS, addr string, timeout time.Duration) (string, error) {
	c, err := netns.Dial(ns.Path, "tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := fmt.Sprintf("hello-%d", msgSeq.Add(1))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", fmt.Errorf("write to %s: %w", addr, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	tag, got, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
	if !ok || got != msg {
		return "", fmt.Errorf("echo from %s: sent %q, got %q", addr, msg, line)
	}
	return tag, nil
}

// TalkUDP sends one datagram from the namespace to addr and returns the tag
// of the answer. It retries a few times, as UDP may lose the first packet
// while neighbours are resolved.
func TalkUDP(ns *NS, addr string, timeout time.Duration) (string, error) {
	c, err := netns.Dial(ns.Path, "udp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	msg := fmt.Sprintf("dgram-%d", msgSeq.Add(1))
	buf := make([]byte, 1500)
	var lastErr error
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(msg)); err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			lastErr = err
			continue
		}
		tag, got, ok := strings.Cut(string(buf[:n]), ":")
		if !ok || got != msg {
			return "", fmt.Errorf("udp echo from %s: sent %q, got %q", addr, msg, buf[:n])
		}
		return tag, nil
	}
	if lastErr == nil {
		lastErr = errors.New("timeout")
	}
	return "", fmt.Errorf("udp to %s: %w", addr, lastErr)
}

// ExpectTCP fails the test unless a connection from ns to addr reaches the
// echo server tagged want.
func ExpectTCP(t testing.TB, ns *NS, addr, want string) {
	t.Helper()
	got, err := TalkTCP(ns, addr, 3*time.Second)
	if err != nil {
		t.Fatalf("tcp from %s to %s: %v", ns.Name, addr, err)
	}
	if got != want {
		t.Fatalf("tcp from %s to %s reached %q, want %q", ns.Name, addr, got, want)
	}
}

// ExpectNoTCP fails the test if a connection from ns to addr gets an echo.
func ExpectNoTCP(t testing.TB, ns *NS, addr string) {
	t.Helper()
	if got, err := TalkTCP(ns, addr, 700*time.Millisecond); err == nil {
		t.Fatalf("tcp from %s to %s still reaches %q", ns.Name, addr, got)
	}
}

// WhoAmITCP serves TCP in the namespace at addr: each connection is told
// the source address it came from, as the server saw it (after any NAT).
func WhoAmITCP(t testing.TB, ns *NS, addr string) string {
	t.Helper()
	return ServeTCP(t, ns, addr, func(c net.Conn) {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		_, _ = io.WriteString(c, host+"\n")
	})
}

// AskTCP connects from the namespace to a WhoAmITCP server and returns the
// address the server saw.
func AskTCP(ns *NS, addr string, timeout time.Duration) (string, error) {
	c, err := netns.Dial(ns.Path, "tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), nil
}
