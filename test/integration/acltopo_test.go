//go:build linux

package integration

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/test/cnitest"
)

// aclTopo is TestACLMatrix's world: three zones (mgmt dual-stack) with two
// containers each, mgmt-1 at the static address the reference-shaped
// policy opens backend:3306 to, an outside namespace routed through the
// host, and every peer serving TCP on aclPorts.
type aclTopo struct {
	e             *env
	ctrs          []*ctr
	peers, peers6 []aclPeer
	policy        *conf.Policy
}

// aclTopoOptions vary the topology for tests that need more than the
// matrix: NAT, published ports, a zone bridge the user made beforehand.
type aclTopoOptions struct {
	ipMasq bool
	// hostPort, when not 0, publishes each container's port 8080 on
	// hostPort + its index.
	hostPort int
	// userBridge names the zone whose bridge the test creates before
	// the plugin runs (zonenet adopts it).
	userBridge string
	// beforeAdd, when set, runs once the host namespace exists and
	// before the first ADD.
	beforeAdd func(e *env)
}

const refDefaults = "{intraZone: allow, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: allow}"

func newACLTopo(t *testing.T, o aclTopoOptions) *aclTopo {
	e := newEnv(t, "1.1.0")
	front, back, mgmt := e.zone("frontend"), e.zone("backend"), e.zone("mgmt")
	mgmt.Subnet6 = cnitest.Subnet6(t).String()
	e.conf.Zones = []cnitest.Zone{front, back, mgmt}
	e.conf.IPMasq = cnitest.Bool(o.ipMasq)
	if o.hostPort != 0 {
		e.conf.Capabilities = map[string]bool{"portMappings": true}
	}
	for _, z := range e.conf.Zones {
		if z.Name == o.userBridge {
			e.host.Run(t, "ip", "link", "add", z.Bridge, "type", "bridge")
		}
	}
	if o.beforeAdd != nil {
		o.beforeAdd(e)
	}
	mgmtAddr := cnitest.Nth(netip.MustParsePrefix(mgmt.Subnet), 10)
	doc := aclPolicy(refDefaults, mgmtAddr.String(), true)
	path := filepath.Join(t.TempDir(), "reference.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	e.conf.Extra = map[string]any{"policy": path}
	netConf, err := conf.FromConfList(e.conf.JSON(t))
	if err != nil {
		t.Fatal(err)
	}
	tp := &aclTopo{e: e}
	if tp.policy, _, err = conf.ParsePolicy([]byte(doc), netConf.Zones); err != nil {
		t.Fatal(err)
	}
	for _, z := range e.conf.Zones {
		for i := 1; i <= 2; i++ {
			c := e.newCtr()
			args := cnitest.CNIArgs{Zone: z.Name}
			if z.Name == "mgmt" && i == 1 {
				args.IPs = []string{mgmtAddr.String()}
			}
			c.Conf.SetArgs(args)
			if o.hostPort != 0 {
				c.Conf.RuntimeConfig = &cnitest.RuntimeConfig{PortMappings: []cnitest.PortMapping{
					{HostPort: o.hostPort + len(tp.ctrs), ContainerPort: 8080, Protocol: "tcp"}}}
			}
			res := e.add(c)
			tp.ctrs = append(tp.ctrs, c)
			name := fmt.Sprintf("%s-%d", z.Name, i)
			for _, ip := range res.IPs {
				a, _ := netip.AddrFromSlice(ip.Address.IP)
				if a = a.Unmap(); a.Is4() {
					tp.peers = append(tp.peers, aclPeer{name: name, ns: c.NS, addr: a})
				} else {
					tp.peers6 = append(tp.peers6, aclPeer{name: name, ns: c.NS, addr: a})
				}
			}
		}
	}
	if tp.peers[4].addr != mgmtAddr {
		t.Fatalf("mgmt-1 got %s, want the static %s", tp.peers[4].addr, mgmtAddr)
	}
	link := cnitest.Subnet4(t)
	hostOut, outAddr := cnitest.Nth(link, 1), cnitest.Nth(link, 2)
	outside := cnitest.NewNS(t, "znt-out")
	cnitest.Connect(t, e.host, netip.PrefixFrom(hostOut, 24).String(), outside, netip.PrefixFrom(outAddr, 24).String())
	outside.Run(t, "ip", "route", "add", "default", "via", hostOut.String())
	tp.peers = append(tp.peers,
		aclPeer{name: "outside", ns: outside, addr: outAddr},
		aclPeer{name: "host-gw", ns: e.host, addr: zoneGateway(front), host: true},
		aclPeer{name: "host-out", ns: e.host, addr: hostOut, host: true})
	tp.peers6 = append(tp.peers6, aclPeer{name: "host-gw6", ns: e.host, addr: zoneGateway6(mgmt), host: true})
	for _, p := range tp.peers6 {
		p.ns.WaitAddrsReady(t, 5*time.Second)
	}
	for _, p := range append(slices.Clone(tp.peers), tp.peers6...) {
		for _, port := range aclPorts {
			cnitest.EchoTCP(t, p.ns, hostPort(p.addr, int(port)), p.name)
		}
	}
	return tp
}

// delAll detaches every container.
func (tp *aclTopo) delAll() {
	for _, c := range tp.ctrs {
		tp.e.del(c)
	}
}

// zonenetLines are the lines of both families that name a chain or set of
// ours.
func zonenetLines(t *testing.T, ns *cnitest.NS) []string {
	t.Helper()
	var out []string
	for _, v6 := range []bool{false, true} {
		for _, l := range ns.Iptables(t, v6) {
			if strings.Contains(l, "ZONENET-") || strings.Contains(l, "ZN-") || strings.Contains(l, "zn-") {
				out = append(out, l)
			}
		}
	}
	return out
}

// withoutZonenet drops the lines that name our chains or sets.
func withoutZonenet(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool {
		return strings.Contains(l, "ZONENET-") || strings.Contains(l, "ZN-") || strings.Contains(l, "zn-")
	})
}

// ctl runs zonenetctl inside ns and returns its exit code and output.
func ctl(t *testing.T, e *env, ns *cnitest.NS, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if e.bins.Ctl == "" {
		t.Fatal("zonenetctl is not part of the build")
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, e.bins.Ctl}, args...)...)
	var o, eb strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &eb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("zonenetctl %v: %v", args, err)
	}
	return code, o.String(), eb.String()
}
