//go:build linux

package integration

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/zonenet/zonenet/test/cnitest"
)

// TestConcurrentAddDel runs 100 ADDs at once on one network, then 100 DELs
// at once: every exec succeeds, no address is handed out twice, and
// afterwards no lease, veth or rule is left.
func TestConcurrentAddDel(t *testing.T) {
	t.Parallel()
	const n = 100
	e := newEnv(t, "1.1.0")
	z := e.conf.Zones[0]
	cs := make([]*ctr, n)
	for i := range cs {
		cs[i] = e.newCtr()
	}

	runAll := func(verb string, conf func(c *ctr) cnitest.NetConf) []cnitest.Outcome {
		out := make([]cnitest.Outcome, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, c := range cs {
			call := e.call(verb, c, conf(c))
			call.Timeout = 2 * time.Minute
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out[i] = cnitest.Run(call)
			}()
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		t.Logf("%d concurrent %s took %s", n, verb, time.Since(t0).Round(time.Millisecond))
		return out
	}

	adds := runAll("ADD", func(c *ctr) cnitest.NetConf { return c.Conf })
	failed := 0
	for i, o := range adds {
		if o.Err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("ADD #%d: code %d: %s (%s) stderr: %s", i, o.Err.Code, o.Err.Msg, o.Err.Details, o.Stderr)
			}
			continue
		}
		cs[i].Out = o.Stdout
		res, err := cnitest.ParseResultErr("1.1.0", o.Stdout)
		if err != nil {
			t.Errorf("ADD #%d: %v", i, err)
			continue
		}
		cs[i].Res = res
	}
	if failed > 0 {
		t.Errorf("%d of %d concurrent ADDs failed", failed, n)
	}

	owners := map[netip.Addr]string{}
	veths := map[string]bool{}
	for _, c := range cs {
		if c.Res == nil {
			continue
		}
		att := e.expectAttached(c, z)
		if other, dup := owners[att.ip4()]; dup {
			t.Errorf("address %s handed to %s and %s", att.ip4(), other, c.ID)
		}
		owners[att.ip4()] = c.ID
		veths[att.HostVeth] = true
	}
	leases := e.leases()
	if len(leases) != n-failed {
		t.Errorf("%d leases after %d successful ADDs", len(leases), n-failed)
	}
	if got := e.host.HostVeths(t); len(got) != len(veths) {
		t.Errorf("%d host veths for %d attachments", len(got), len(veths))
	}

	dels := runAll("DEL", func(c *ctr) cnitest.NetConf { return c.withPrev() })
	for i, o := range dels {
		if o.Err != nil {
			t.Errorf("DEL #%d: code %d: %s (%s) stderr: %s", i, o.Err.Code, o.Err.Msg, o.Err.Details, o.Stderr)
		}
	}
	if l := e.leases(); len(l) != 0 {
		t.Errorf("%d leases left after the DELs, e.g. %v", len(l), cnitest.LeaseLines(l[:min(3, len(l))]))
	}
	if v := e.host.HostVeths(t); len(v) != 0 {
		t.Errorf("%d host veths left after the DELs", len(v))
	}
	for a := range owners {
		if r := rulesNaming(t, e.host, a); len(r) > 0 {
			t.Errorf("rules still name %s: %v", a, r)
		}
	}
	for _, c := range cs {
		if c.NS.HasLink(t, c.IfName) {
			t.Errorf("container %s still has %s", c.ID, c.IfName)
		}
	}
}
