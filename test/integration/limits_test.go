//go:build linux

package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/test/cnitest"
)

// policyEnv is a zone under the policy doc, rendered with the zone's name.
func policyEnv(t *testing.T, doc string) *env {
	e := newEnv(t, "1.1.0")
	e.conf.IPMasq = cnitest.Bool(false)
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(doc, e.conf.Zones[0].Name)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.conf.Extra = map[string]any{"policy": p}
	return e
}

const openDefaults = "version: 1\ndefaults: {intraZone: allow, interZone: allow, toExternal: allow, fromExternal: allow, toHost: allow, fromHost: allow}\n"

// holdTCP accepts connections in ns and keeps them open until the test
// ends.
func holdTCP(t *testing.T, ns *cnitest.NS, addr string) {
	cnitest.ServeTCP(t, ns, addr, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
}

// TestConnectionLimit: with maxConnections 3, a container's fourth
// concurrent connection is refused; closing one lets the next through.
func TestConnectionLimit(t *testing.T) {
	t.Parallel()
	e := policyEnv(t, openDefaults+"zones:\n  - name: %s\n    limits: {maxConnections: 3}\n")
	z := e.conf.Zones[0]
	server, client := e.newCtr(), e.newCtr()
	for _, c := range []*ctr{server, client} {
		e.add(c)
		c.NS.WaitAddrsReady(t, 5*time.Second)
	}
	srv := hostPort(e.expectAttached(server, z).ip4(), 9000)
	holdTCP(t, server.NS, srv)
	var open []net.Conn
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	for i := 0; i < 3; i++ {
		c, err := netns.Dial(client.NS.Path, "tcp", srv, 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d of 3: %v", i+1, err)
		}
		open = append(open, c)
	}
	_, err := netns.Dial(client.NS.Path, "tcp", srv, 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("fourth connection: err = %v, want refused", err)
	}
	if n := e.host.RulesMatching(t, "connlimit", "maxConnections"); len(n) == 0 {
		t.Error("no connlimit rule in the host")
	}
	open[0].Close()
	open = open[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := netns.Dial(client.NS.Path, "tcp", srv, 2*time.Second)
		if err == nil {
			open = append(open, c)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing one connection: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRateLimitBlocks: a source opening more than the zone's
// newConnectionsPerMinute is counted, logged and blocked for blockFor,
// then let through again; another source is not affected.
func TestRateLimitBlocks(t *testing.T) {
	t.Parallel()
	e := policyEnv(t, openDefaults+"zones:\n  - name: %s\n    limits:\n      rateLimit: {newConnectionsPerMinute: 30, action: drop, blockFor: 3s}\n")
	z := e.conf.Zones[0]
	server, abuser, other := e.newCtr(), e.newCtr(), e.newCtr()
	for _, c := range []*ctr{server, abuser, other} {
		e.add(c)
		c.NS.WaitAddrsReady(t, 5*time.Second)
	}
	srv := hostPort(e.expectAttached(server, z).ip4(), 9001)
	cnitest.EchoTCP(t, server.NS, srv, "srv")
	ok, blocked := 0, 0
	for i := 0; i < 45; i++ {
		c, err := netns.Dial(abuser.NS.Path, "tcp", srv, 300*time.Millisecond)
		if err != nil {
			blocked++
			continue
		}
		ok++
		c.Close()
	}
	// The burst is the per-minute figure; the refill during the loop is
	// at most a few connections.
	if ok < 30 || ok > 36 || blocked == 0 {
		t.Fatalf("abuser: %d connections through, %d stopped; want 30-36 through, the rest stopped", ok, blocked)
	}
	blk := e.host.RulesMatching(t, "recent", "--rcheck")
	if len(blk) == 0 {
		t.Fatal("no block rule in the host")
	}
	// Counted: the NFLOG rule's packet counter.
	logged := -1
	for _, l := range strings.Split(string(e.host.Run(t, "iptables", "-L", "-v", "-n", "-x")), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "NFLOG" {
			_, _ = fmt.Sscan(f[0], &logged)
		}
	}
	if logged < 1 {
		t.Fatalf("NFLOG rule for sources over the rate counted %d packets, want > 0", logged)
	}
	cnitest.ExpectNoTCP(t, abuser.NS, srv)
	cnitest.ExpectTCP(t, other.NS, srv, "srv")
	time.Sleep(4 * time.Second)
	cnitest.ExpectTCP(t, abuser.NS, srv, "srv")
}
