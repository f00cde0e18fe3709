//go:build linux

package integration

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/test/cnitest"
)

// aclPorts are the ports the test policies mention, and one they don't.
var aclPorts = []uint16{53, 80, 443, 3306, 8080, 9000}

// aclPolicy is shaped like deploy/policy-reference.yaml, with the
// management address of the test and the given defaults.
func aclPolicy(defaults, mgmtAddr string, rules bool) string {
	doc := "version: 1\ndefaults: " + defaults + "\n"
	if !rules {
		return doc
	}
	return doc + `rules:
  - name: web-in
    source: external
    destination: {zone: frontend, ports: [80, 443]}
    protocol: tcp
  - name: web-out
    source: frontend
    destination: {external: true, ports: [80, 443]}
    protocol: tcp
  - name: api
    source: frontend
    destination: {zone: backend, ports: [8080]}
    protocol: tcp
  - name: db-from-mgmt
    source: ` + mgmtAddr + `
    destination: {zone: backend, ports: [3306]}
    protocol: tcp
  - name: gateway-dns
    source: [frontend, backend, mgmt]
    destination: {host: true, ports: [53]}
    protocol: [udp, tcp]
`
}

// aclPeer is one place a connection starts or ends.
type aclPeer struct {
	name string
	ns   *cnitest.NS
	addr netip.Addr
	host bool // the node itself
}

// TestACLMatrix builds three zones with two containers each, an outside
// namespace routed through the host, and checks every (source,
// destination, port) TCP connect against the policy's truth function, for
// the reference-shaped policy (installed by the plugin when it sets the
// zones up) and two variants (installed with zonenetctl policy apply).
func TestACLMatrix(t *testing.T) {
	tp := newACLTopo(t, aclTopoOptions{})
	e := tp.e
	mgmtAddr := tp.peers[4].addr
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	variants := []struct{ name, doc string }{
		{"reference", aclPolicy(refDefaults, mgmtAddr.String(), true)},
		{"intra-zone-deny", aclPolicy(strings.Replace(refDefaults, "intraZone: allow", "intraZone: deny", 1), mgmtAddr.String(), true)},
		{"wide-open", aclPolicy("{intraZone: allow, interZone: allow, toExternal: allow, fromExternal: allow, toHost: allow, fromHost: allow}", "", false)},
	}
	conflist := write("net.conf", string(e.conf.JSON(t)))
	netConf, err := conf.FromConfList(e.conf.JSON(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(tp.peers6) != 3 {
		t.Fatalf("IPv6 peers %v, want both mgmt containers and the host", tp.peers6)
	}
	for i, v := range variants {
		if i > 0 {
			if e.bins.Ctl == "" {
				t.Fatal("zonenetctl is not part of the build")
			}
			out := e.host.Run(t, e.bins.Ctl, "policy", "apply", "--conflist", conflist, "--policy", write(v.name+".yaml", v.doc))
			t.Logf("%s: %s", v.name, strings.TrimSpace(string(out)))
		}
		pol, _, err := conf.ParsePolicy([]byte(v.doc), netConf.Zones)
		if err != nil {
			t.Fatal(err)
		}
		checkMatrix(t, v.name, pol, tp.peers)
		checkMatrix(t, v.name+"/IPv6", pol, tp.peers6)
	}

	// GC takes the network's filter away with its last zone.
	tp.delAll()
	e.gc()
	if left := zonenetLines(t, e.host); len(left) > 0 {
		t.Errorf("left after GC of every zone:\n%s", strings.Join(left, "\n"))
	}
	if sets := e.host.IPSets(t); len(sets) > 0 {
		t.Errorf("ipsets left after GC of every zone: %v", sets)
	}
}

// checkMatrix connects from every peer to every other on every port, all
// at once, and reports each cell where the kernel and the truth function
// disagree.
func checkMatrix(t *testing.T, variant string, pol *conf.Policy, peers []aclPeer) {
	t.Helper()
	type cell struct {
		src, dst aclPeer
		port     uint16
		got      bool
		err      error
	}
	var cells []*cell
	for _, s := range peers {
		if s.name == "host-out" {
			continue // the host as a source is host-gw
		}
		for _, d := range peers {
			if s.ns == d.ns {
				continue
			}
			for _, port := range aclPorts {
				cells = append(cells, &cell{src: s, dst: d, port: port})
			}
		}
	}
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range cells {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag, err := cnitest.TalkTCP(c.src.ns, hostPort(c.dst.addr, int(c.port)), 1500*time.Millisecond)
			c.got, c.err = err == nil, err
			if err == nil && tag != c.dst.name && !(c.dst.host && strings.HasPrefix(tag, "host")) {
				c.got, c.err = false, fmt.Errorf("answered by %s", tag)
			}
		}()
	}
	wg.Wait()
	bad, allowed := 0, 0
	for _, c := range cells {
		want, by := pol.Allows(conf.Flow{Src: c.src.addr, Dst: c.dst.addr, SrcHost: c.src.host, DstHost: c.dst.host,
			Proto: conf.ProtoTCP, DstPort: c.port})
		if want {
			allowed++
		}
		var ne net.Error
		if want && !c.got && errors.As(c.err, &ne) && ne.Timeout() {
			// Hundreds of concurrent first connects queue behind ARP
			// on a loaded machine: one unhurried retry. A denied cell
			// never connects however long it waits.
			_, c.err = cnitest.TalkTCP(c.src.ns, hostPort(c.dst.addr, int(c.port)), 4*time.Second)
			c.got = c.err == nil
		}
		if c.got != want {
			bad++
			t.Errorf("%s: %s -> %s (%s) port %d: connected=%v, policy says %v (%s); err=%v",
				variant, c.src.name, c.dst.name, c.dst.addr, c.port, c.got, want, by, c.err)
		}
	}
	t.Logf("%s: %d cells (%d allowed), %d mismatches, %v", variant, len(cells), allowed, bad, time.Since(start).Round(time.Millisecond))
}

// TestACLBadPolicy: a policy file that does not parse fails the ADD with
// code 7 naming the file, before anything changes on the host.
func TestACLBadPolicy(t *testing.T) {
	e := newEnv(t, "1.0.0")
	path := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nrules:\n  - name: x\n    source: nowhere\n    destination: frontend\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.conf.Extra = map[string]any{"policy": path}
	before := e.snapshot()
	c := e.newCtr()
	_, cerr := e.run("ADD", c, e.conf)
	expectCode(t, "ADD with a broken policy", cerr, 7)
	if cerr != nil && !strings.Contains(cerr.Msg, path) {
		t.Errorf("error %q does not name %s", cerr.Msg, path)
	}
	e.expectSame(before, "ADD with a broken policy")
}
