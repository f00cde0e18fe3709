//go:build linux

package integration

import (
	"net/netip"
	"testing"

	"github.com/zonenet/zonenet/test/cnitest"
)

// TestAddRollback makes ADDs fail after the address is allocated and
// checks each one leaves the host exactly as it found it: no lease, no
// veth, no rule, nothing else changed, and nothing in the container.
func TestAddRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.0.0")
	z := e.conf.Zones[0]
	// A second zone whose bridge name is already taken in the host by a
	// link that is not a bridge: ensuring the bridge fails after IPAM.
	blocked := e.zone("blocked")
	e.conf.Zones = append(e.conf.Zones, blocked)
	e.host.AddVethPair(t, blocked.Bridge, cnitest.Unique(t, "zbp"))
	e.conf.Capabilities = map[string]bool{"portMappings": true, "mac": true}

	// An attachment that exists already, so the bridge, the zone rules and
	// the store are there and a rollback must not disturb them.
	first := e.newCtr()
	e.add(first)
	attFirst := e.expectAttached(first, z)

	for _, tc := range []struct {
		name  string
		setup func(c *ctr)
	}{
		{"ifname-taken", func(c *ctr) {
			// The veth cannot be created: the container already has eth0.
			c.NS.AddDummy(t, c.IfName)
		}},
		{"bridge-name-taken", func(c *ctr) {
			c.Args = "ZONE=blocked"
		}},
		{"bridge-name-taken-with-static-ip-and-ports", func(c *ctr) {
			c.Args = "ZONE=blocked;IP=" + cnitest.Nth(netip.MustParsePrefix(blocked.Subnet), 9).String()
			c.Conf.RuntimeConfig = &cnitest.RuntimeConfig{PortMappings: []cnitest.PortMapping{{HostPort: 18444, ContainerPort: 443, Protocol: "tcp"}}}
		}},
		{"multicast-mac", func(c *ctr) {
			// Valid syntax, but no interface may carry a multicast MAC.
			c.Conf.RuntimeConfig = &cnitest.RuntimeConfig{MAC: "01:00:5e:00:00:01"}
		}},
		{"ifname-taken-with-ports", func(c *ctr) {
			c.NS.AddDummy(t, c.IfName)
			c.Conf.RuntimeConfig = &cnitest.RuntimeConfig{PortMappings: []cnitest.PortMapping{{HostPort: 18443, ContainerPort: 443, Protocol: "tcp"}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			c := e.newCtr()
			tc.setup(c)
			before := e.snapshot()
			ctrBefore := cnitest.Snapshot(t, c.NS, "", "")
			out, cerr := e.run("ADD", c, c.Conf)
			if cerr == nil {
				t.Fatalf("ADD succeeded, want a failure:\n%s", out)
			}
			t.Logf("ADD failed as expected: code %d: %s", cerr.Code, cerr.Msg)
			if _, ok := e.lease(c); ok {
				t.Errorf("failed ADD left a lease")
			}
			e.expectSame(before, "failed ADD")
			if d := ctrBefore.Diff(cnitest.Snapshot(t, c.NS, "", "")); d != "" {
				t.Errorf("failed ADD changed the container namespace:\n%s", d)
			}
			// The runtime's DEL after a failed ADD succeeds and changes
			// nothing either.
			e.del(c)
			e.expectSame(before, "DEL after a failed ADD")
		})
	}

	// The existing container is untouched and the zone still works.
	e.expectAttached(first, z)
	srv := cnitest.EchoTCP(t, e.host, hostPort(zoneGateway(z), 0), "gw")
	cnitest.ExpectTCP(t, first.NS, srv, "gw")
	next := e.newCtr()
	e.add(next)
	e.expectAttached(next, z)
	e.del(next)
	e.del(first)
	e.expectDetached(first, attFirst)
}

// TestAddRollbackFreshHost fails the very first ADD of a network after its
// address is allocated: the bridge, NAT rules and sysctls that ADD set up
// for the zone must go too, since no attachment needs them.
func TestAddRollbackFreshHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.1.0")
	c := e.newCtr()
	c.NS.AddDummy(t, c.IfName)
	before := e.snapshot()
	ctrBefore := cnitest.Snapshot(t, c.NS, "", "")
	if out, cerr := e.run("ADD", c, c.Conf); cerr == nil {
		t.Fatalf("ADD succeeded, want a failure:\n%s", out)
	}
	e.expectSame(before, "failed first ADD")
	if d := ctrBefore.Diff(cnitest.Snapshot(t, c.NS, "", "")); d != "" {
		t.Errorf("failed ADD changed the container namespace:\n%s", d)
	}
}
