//go:build linux

package integration

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/test/cnitest"
)

// TestPortMappings publishes a TCP and a UDP port of a container and
// reaches them from an "outside" namespace wired to the host; after DEL the
// ports are gone and so are the DNAT rules. It also checks that egress to
// the outside is masqueraded.
func TestPortMappings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.0.0")
	e.conf.Capabilities = map[string]bool{"portMappings": true}

	// outside <-> host link on a subnet of its own.
	link := cnitest.Subnet4(t)
	hostOut, outsideAddr := cnitest.Nth(link, 1), cnitest.Nth(link, 2)
	outside := cnitest.NewNS(t, "znt-out")
	cnitest.Connect(t, e.host, netip.PrefixFrom(hostOut, 24).String(), outside, netip.PrefixFrom(outsideAddr, 24).String())

	const tcpPort, udpPort = 18080, 18081
	c := e.newCtr()
	c.Conf.RuntimeConfig = &cnitest.RuntimeConfig{PortMappings: []cnitest.PortMapping{
		{HostPort: tcpPort, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: udpPort, ContainerPort: 81, Protocol: "udp"},
	}}
	e.add(c)
	att := e.expectAttached(c, e.conf.Zones[0])
	cnitest.EchoTCP(t, c.NS, "0.0.0.0:80", "ctr-tcp")
	cnitest.EchoUDP(t, c.NS, "0.0.0.0:81", "ctr-udp")

	published := hostPort(hostOut, tcpPort)
	cnitest.ExpectTCP(t, outside, published, "ctr-tcp")
	if got, err := cnitest.TalkUDP(outside, hostPort(hostOut, udpPort), 3*time.Second); err != nil || got != "ctr-udp" {
		t.Errorf("udp from outside to %s: got %q, %v; want the container's answer", hostPort(hostOut, udpPort), got, err)
	}
	if rules := rulesNaming(t, e.host, att.ip4()); len(rules) == 0 {
		t.Errorf("no rule names the container address %s after ADD with port mappings", att.ip4())
	}

	// Egress from the zone leaves with the host's address (ipMasq).
	who := cnitest.WhoAmITCP(t, outside, hostPort(outsideAddr, 9000))
	seen, err := cnitest.AskTCP(c.NS, who, 3*time.Second)
	if err != nil {
		t.Errorf("container to outside %s: %v", who, err)
	} else if seen != hostOut.String() {
		t.Errorf("outside saw the container as %s, want the masqueraded host address %s", seen, hostOut)
	}

	e.del(c)
	e.expectDetached(c, att)
	cnitest.ExpectNoTCP(t, outside, published)
	if got, err := cnitest.TalkUDP(outside, hostPort(hostOut, udpPort), 700*time.Millisecond); err == nil {
		t.Errorf("udp port %d still answers (%q) after DEL", udpPort, got)
	}
	for _, port := range []int{tcpPort, udpPort} {
		for _, r := range e.host.RulesMatching(t, "DNAT") {
			if strings.Contains(r, "--dport "+strconv.Itoa(port)) {
				t.Errorf("DNAT rule for host port %d left after DEL: %s", port, r)
			}
		}
	}
}
