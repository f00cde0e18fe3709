//go:build linux

package integration

import (
	"testing"
	"time"

	"github.com/zonenet/zonenet/test/cnitest"
)

// denyEnv is a zone under a policy that denies traffic between its
// containers: a flushed filter table shows as a connection that succeeds.
func denyEnv(t *testing.T) *env {
	return policyEnv(t, "version: 1\ndefaults: {intraZone: deny}\nzones:\n  - name: %s\n")
}

// TestPolicyRepair: `iptables -F` in the host takes the policy away (a
// denied connection then succeeds); the next ADD, or the next CHECK,
// puts it back, and the connection is denied again.
func TestPolicyRepair(t *testing.T) {
	t.Parallel()
	for _, by := range []string{"ADD", "CHECK"} {
		t.Run(by, func(t *testing.T) {
			e := denyEnv(t)
			z := e.conf.Zones[0]
			server, client := e.newCtr(), e.newCtr()
			for _, c := range []*ctr{server, client} {
				e.add(c)
				c.NS.WaitAddrsReady(t, 5*time.Second)
			}
			srv := hostPort(e.expectAttached(server, z).ip4(), 8080)
			cnitest.EchoTCP(t, server.NS, srv, "srv")
			cnitest.ExpectNoTCP(t, client.NS, srv)

			e.host.Run(t, "iptables", "-F")
			cnitest.ExpectTCP(t, client.NS, srv, "srv")

			switch by {
			case "ADD":
				e.add(e.newCtr())
			case "CHECK":
				if cerr := e.check(client); cerr != nil {
					t.Fatalf("CHECK after flush: %s (%s)", cerr.Msg, cerr.Details)
				}
			}
			if len(e.host.RulesMatching(t, "-j ZONENET-FORWARD")) == 0 || len(e.host.RulesMatching(t, "-j ZONENET-SPOOF")) == 0 {
				t.Fatalf("policy not reinstalled by %s", by)
			}
			cnitest.ExpectNoTCP(t, client.NS, srv)
			if cerr := e.check(server); cerr != nil {
				t.Errorf("CHECK after repair: %s (%s)", cerr.Msg, cerr.Details)
			}
		})
	}
}
