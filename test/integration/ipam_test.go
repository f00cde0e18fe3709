//go:build linux

package integration

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/test/cnitest"
)

// TestDelegatedIPAM hands address management to the reference host-local
// plugin (found through CNI_PATH): containers get addresses from its range,
// host-local records them in its own data directory, and DEL releases them
// there.
func TestDelegatedIPAM(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.0.0") // host-local speaks up to 1.0.0
	z := e.conf.Zones[0]
	sn := netip.MustParsePrefix(z.Subnet)
	hlDir := t.TempDir()
	first, last := cnitest.Nth(sn, 100), cnitest.Nth(sn, 120)
	e.conf.IPAM = map[string]any{
		"type":    "host-local",
		"dataDir": hlDir,
		"ranges": [][]map[string]string{{{
			"subnet": z.Subnet, "rangeStart": first.String(), "rangeEnd": last.String(),
		}}},
	}

	hlFile := func(a netip.Addr) string { return filepath.Join(hlDir, e.conf.Name, a.String()) }
	a, b := e.newCtr(), e.newCtr()
	e.add(a)
	e.add(b)
	attA, attB := e.expectAttached(a, z), e.expectAttached(b, z)
	for _, x := range []struct {
		c   *ctr
		att attachment
	}{{a, attA}, {b, attB}} {
		ip := x.att.ip4()
		if ip.Compare(first) < 0 || ip.Compare(last) > 0 {
			t.Errorf("%s got %s, want an address of host-local's range %s-%s", x.c.ID, ip, first, last)
		}
		data, err := os.ReadFile(hlFile(ip))
		if err != nil {
			t.Errorf("host-local has no record of %s: %v", ip, err)
		} else if !strings.Contains(string(data), x.c.ID) {
			t.Errorf("host-local records %s for %q, want %s", ip, data, x.c.ID)
		}
		if l, ok := e.lease(x.c); ok && l.Delegated != "host-local" {
			t.Errorf("store record of %s says delegated=%q, want host-local", x.c.ID, l.Delegated)
		}
	}
	if attA.ip4() == attB.ip4() {
		t.Fatalf("both containers got %s", attA.ip4())
	}

	srv := cnitest.EchoTCP(t, b.NS, hostPort(attB.ip4(), 7010), "B")
	cnitest.ExpectTCP(t, a.NS, srv, "B")
	if cerr := e.check(a); cerr != nil {
		t.Errorf("CHECK with delegated IPAM: code %d: %s", cerr.Code, cerr.Msg)
	}

	e.del(a)
	e.expectDetached(a, attA)
	if _, err := os.Stat(hlFile(attA.ip4())); !os.IsNotExist(err) {
		t.Errorf("host-local still holds %s after DEL (stat: %v)", attA.ip4(), err)
	}
	e.del(a)
	// DEL without a netns still releases the delegated address.
	call := e.call("DEL", b, b.withPrev())
	call.Netns = ""
	cnitest.MustExec(t, call)
	e.expectDetached(b, attB)
	if _, err := os.Stat(hlFile(attB.ip4())); !os.IsNotExist(err) {
		t.Errorf("host-local still holds %s after DEL without netns (stat: %v)", attB.ip4(), err)
	}
}
