//go:build linux

package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zonenet/zonenet/test/cnitest"
)

// TestCrashDuringAdd kills the plugin (SIGKILL, with any helper it forked)
// at random points of ADDs, then garbage-collects with the list of the
// ADDs that completed, as a runtime would after a restart. Nothing of the
// killed ADDs may survive: no lease, no host veth, no rule; the completed
// ones stay intact and the store still works.
func TestCrashDuringAdd(t *testing.T) {
	t.Parallel()
	const rounds = 40
	e := newEnv(t, "1.1.0")
	z := e.conf.Zones[0]
	e.conf.Capabilities = map[string]bool{"portMappings": true}
	subnet := netip.MustParsePrefix(z.Subnet)

	withPort := func(c *ctr, i int) {
		c.Conf.RuntimeConfig = &cnitest.RuntimeConfig{PortMappings: []cnitest.PortMapping{{HostPort: 20000 + i, ContainerPort: 80, Protocol: "tcp"}}}
	}

	// One undisturbed ADD tells how long an ADD takes here, so the kills
	// land all along it.
	base := e.newCtr()
	withPort(base, 0)
	t0 := time.Now()
	e.add(base)
	took := time.Since(t0)
	window := max(30*time.Millisecond, took*6/5)
	t.Logf("one ADD takes %s; killing at random within %s", took.Round(time.Millisecond), window.Round(time.Millisecond))

	valid := []*ctr{base}
	var killed []*ctr
	killedPorts := map[int]bool{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := 1; i <= rounds; i++ {
		c := e.newCtr()
		withPort(c, i)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := e.call("ADD", c, c.Conf).Cmd(ctx)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(window))))
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err := cmd.Wait()
		cancel()
		switch {
		case err == nil:
			c.Out = stdout.Bytes()
			c.Res = cnitest.ParseResult(t, "1.1.0", c.Out)
			valid = append(valid, c)
		default:
			killed = append(killed, c)
			killedPorts[20000+i] = true
		}
	}
	t.Logf("%d ADDs completed, %d killed", len(valid)-1, len(killed))
	if len(killed) == 0 {
		t.Fatalf("no ADD was interrupted; the kill window %s is too wide", window)
	}

	var list []cnitest.Attachment
	for _, c := range valid {
		list = append(list, c.key())
	}
	e.gcList(list)

	// The store holds exactly the completed attachments.
	var want, got []string
	for _, c := range valid {
		want = append(want, c.ID+"/"+c.IfName)
	}
	leases := e.leases()
	validIPs := map[netip.Addr]bool{}
	validVeths := map[string]bool{}
	for _, l := range leases {
		got = append(got, l.ContainerID+"/"+l.IfName)
		for _, p := range l.IPs {
			validIPs[p.Addr()] = true
		}
		validVeths[l.HostVeth] = true
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Errorf("leases after GC:\n%s\nwant the completed ADDs:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, c := range valid {
		e.expectAttached(c, z)
	}
	for name := range e.host.HostVeths(t) {
		if !validVeths[name] {
			t.Errorf("host veth %s leaked from a killed ADD", name)
		}
	}
	for _, c := range killed {
		if c.NS.HasLink(t, c.IfName) {
			t.Errorf("killed ADD of %s left %s in its container after GC", c.ID, c.IfName)
		}
	}

	// No rule names a killed ADD's address or host port.
	addrRE := regexp.MustCompile(`\b\d+\.\d+\.\d+\.\d+\b`)
	for _, r := range e.host.RulesMatching(t) {
		for _, m := range addrRE.FindAllString(r, -1) {
			a, err := netip.ParseAddr(m)
			if err != nil || !subnet.Contains(a) || a == zoneGateway(z) || a == subnet.Addr() {
				continue
			}
			if !validIPs[a] {
				t.Errorf("rule names %s, which belongs to no live attachment: %s", a, r)
			}
		}
		for p := range killedPorts {
			if strings.Contains(r, fmt.Sprintf("--dport %d ", p)) || strings.HasSuffix(r, fmt.Sprintf("--dport %d", p)) {
				t.Errorf("rule for the host port %d of a killed ADD: %s", p, r)
			}
		}
	}

	// The store is sound: a new ADD works and gets a fresh address.
	after := e.newCtr()
	e.add(after)
	attAfter := e.expectAttached(after, z)
	if validIPs[attAfter.ip4()] {
		t.Errorf("ADD after the crashes got %s, already leased", attAfter.ip4())
	}
	for _, c := range append(valid, after) {
		e.del(c)
	}
	if l := e.leases(); len(l) != 0 {
		t.Errorf("leases left: %v", cnitest.LeaseLines(l))
	}
	if v := e.host.HostVeths(t); len(v) != 0 {
		t.Errorf("host veths left: %v", mapsKeys(v))
	}
}
