//go:build linux

// Package integration drives the zonenet binary the way container runtimes
// do, inside network namespaces the tests make, and asserts on what the
// kernel holds afterwards. Each test gets a namespace playing the host, its
// own bridges, subnets and data directory, so tests run in parallel and a
// leak in one cannot hide or cause a failure in another.
package integration

import (
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/test/cnitest"
)

func TestMain(m *testing.M) { os.Exit(cnitest.Main(m)) }

// env is one test's world: a host namespace, a data directory and a base
// network configuration.
type env struct {
	t       *testing.T
	bins    cnitest.Bins
	host    *cnitest.NS
	dataDir string
	conf    cnitest.NetConf
}

// newEnv makes a host namespace and a bridge-mode configuration with one
// zone ("frontend") on a fresh subnet with its own bridge.
func newEnv(t *testing.T, version string) *env {
	t.Helper()
	cnitest.RequireRoot(t)
	e := &env{
		t:       t,
		bins:    cnitest.Build(t),
		host:    cnitest.HostNS(t),
		dataDir: t.TempDir(),
	}
	e.conf = cnitest.NetConf{
		CNIVersion: version,
		Name:       cnitest.Unique(t, "net"),
		Type:       "zonenet",
		Mode:       "bridge",
		DataDir:    e.dataDir,
		MTU:        1400,
		IPMasq:     cnitest.Bool(true),
		Zones:      []cnitest.Zone{e.zone("frontend")},
	}
	return e
}

// zone returns a zone on a fresh IPv4 subnet with its own bridge name.
func (e *env) zone(name string) cnitest.Zone {
	return cnitest.Zone{Name: name, Subnet: cnitest.Subnet4(e.t).String(), Bridge: cnitest.Unique(e.t, "zb")}
}

// ctr is one container interface.
type ctr struct {
	NS     *cnitest.NS
	ID     string
	IfName string
	Args   string
	Conf   cnitest.NetConf // used for every verb on this container
	Out    []byte          // stdout of the last successful ADD
	Res    *types100.Result
}

func (e *env) newCtr() *ctr {
	return &ctr{
		NS:     cnitest.ContainerNS(e.t),
		ID:     safeID("ctr-" + cnitest.Unique(e.t, "") + "-" + strings.ToLower(e.t.Name()[:min(len(e.t.Name()), 8)])),
		IfName: "eth0",
		Conf:   e.conf,
	}
}

func (c *ctr) key() cnitest.Attachment {
	return cnitest.Attachment{ContainerID: safeID(c.ID), IfName: c.IfName}
}

// safeID keeps container IDs within the characters CNI allows.
func safeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, s)
}

func (e *env) call(cmd string, c *ctr, conf cnitest.NetConf) cnitest.Call {
	call := cnitest.Call{
		Bin:     e.bins.Zonenet,
		Command: cmd,
		Config:  conf.JSON(e.t),
		InNetns: e.host.Path,
	}
	if c != nil {
		call.ContainerID = safeID(c.ID)
		call.Netns = c.NS.Path
		call.IfName = c.IfName
		call.Args = c.Args
	}
	return call
}

// run executes a verb for c with its configuration.
func (e *env) run(cmd string, c *ctr, conf cnitest.NetConf) ([]byte, *types.Error) {
	e.t.Helper()
	return cnitest.Exec(e.t, e.call(cmd, c, conf))
}

// add runs ADD and fails the test unless it succeeds with a result of the
// configuration's version.
func (e *env) add(c *ctr) *types100.Result {
	e.t.Helper()
	out, cerr := e.run("ADD", c, c.Conf)
	if cerr != nil {
		e.t.Fatalf("ADD %s: code %d: %s (%s)", c.ID, cerr.Code, cerr.Msg, cerr.Details)
	}
	c.Out = out
	c.Res = cnitest.ParseResult(e.t, c.Conf.CNIVersion, out)
	return c.Res
}

// withPrev is c's configuration with its ADD result as prevResult (for
// versions that carry it).
func (c *ctr) withPrev() cnitest.NetConf {
	if c.Out == nil || c.Conf.CNIVersion < "0.4.0" {
		return c.Conf
	}
	return c.Conf.WithPrev(c.Out)
}

func (e *env) check(c *ctr) *types.Error {
	e.t.Helper()
	_, cerr := e.run("CHECK", c, c.withPrev())
	return cerr
}

func (e *env) del(c *ctr) {
	e.t.Helper()
	if _, cerr := e.run("DEL", c, c.withPrev()); cerr != nil {
		e.t.Fatalf("DEL %s: code %d: %s (%s)", c.ID, cerr.Code, cerr.Msg, cerr.Details)
	}
}

func (e *env) gc(valid ...*ctr) {
	e.t.Helper()
	list := []cnitest.Attachment{}
	for _, c := range valid {
		list = append(list, c.key())
	}
	e.gcList(list)
}

func (e *env) gcList(list []cnitest.Attachment) {
	e.t.Helper()
	if _, cerr := e.run("GC", nil, e.conf.WithGC(list)); cerr != nil {
		e.t.Fatalf("GC: code %d: %s (%s)", cerr.Code, cerr.Msg, cerr.Details)
	}
}

func (e *env) status() *types.Error {
	e.t.Helper()
	_, cerr := e.run("STATUS", nil, e.conf)
	return cerr
}

func (e *env) leases() []ipam.Attachment {
	e.t.Helper()
	return cnitest.Leases(e.t, e.dataDir, e.conf.Name)
}

func (e *env) lease(c *ctr) (ipam.Attachment, bool) {
	e.t.Helper()
	for _, a := range e.leases() {
		if a.ContainerID == safeID(c.ID) && a.IfName == c.IfName {
			return a, true
		}
	}
	return ipam.Attachment{}, false
}

func (e *env) snapshot() cnitest.State {
	e.t.Helper()
	return cnitest.Snapshot(e.t, e.host, e.dataDir, e.conf.Name)
}

func (e *env) expectSame(before cnitest.State, what string) {
	e.t.Helper()
	if d := before.Diff(e.snapshot()); d != "" {
		e.t.Errorf("%s changed the host namespace or the store:\n%s", what, d)
	}
}

// attachment is what the kernel holds for one bridge-mode container.
type attachment struct {
	IPs      []netip.Prefix // on the container interface
	HostVeth string
	MAC      string
}

// zoneGateway returns the zone's IPv4 gateway: the configured one or the
// first address of the subnet.
func zoneGateway(z cnitest.Zone) netip.Addr {
	if z.Gateway != "" {
		return netip.MustParseAddr(z.Gateway)
	}
	return cnitest.Nth(netip.MustParsePrefix(z.Subnet), 1)
}

func zoneGateway6(z cnitest.Zone) netip.Addr {
	if z.Gateway6 != "" {
		return netip.MustParseAddr(z.Gateway6)
	}
	return cnitest.Nth(netip.MustParsePrefix(z.Subnet6), 1)
}

// expectAttached checks the kernel state of a bridge-mode container in
// zone z and that the ADD result agrees with it.
func (e *env) expectAttached(c *ctr, z cnitest.Zone) attachment {
	t := e.t
	t.Helper()
	var att attachment
	cl := c.NS.Link(t, c.IfName)
	if cl.Type() != "veth" {
		t.Errorf("container %s: %s is a %s, want veth", c.ID, c.IfName, cl.Type())
	}
	if !cnitest.IsUp(cl) {
		t.Errorf("container %s: %s is down", c.ID, c.IfName)
	}
	if mtu := c.Conf.MTU; mtu != 0 && cl.Attrs().MTU != mtu {
		t.Errorf("container %s: %s MTU %d, want %d", c.ID, c.IfName, cl.Attrs().MTU, mtu)
	}
	att.MAC = cl.Attrs().HardwareAddr.String()

	// Addresses: one per family the zone has, inside the zone's subnet.
	att.IPs = c.NS.Prefixes(t, c.IfName, netlink.FAMILY_ALL)
	subnets := []netip.Prefix{netip.MustParsePrefix(z.Subnet)}
	if z.Subnet6 != "" {
		subnets = append(subnets, netip.MustParsePrefix(z.Subnet6))
	}
	if len(att.IPs) != len(subnets) {
		t.Fatalf("container %s: addresses %v, want one in each of %v", c.ID, att.IPs, subnets)
	}
	for _, sn := range subnets {
		found := false
		for _, p := range att.IPs {
			if sn.Contains(p.Addr()) && p.Bits() == sn.Bits() {
				found = true
			}
		}
		if !found {
			t.Errorf("container %s: no address in %s (with its prefix length) among %v", c.ID, sn, att.IPs)
		}
	}

	// Default route via the zone gateway, over the container interface.
	gw, idx, ok := c.NS.DefaultRoute(t, netlink.FAMILY_V4)
	if !ok || gw != zoneGateway(z) || idx != cl.Attrs().Index {
		t.Errorf("container %s: default route via %v dev #%d (found %v), want via %s dev %s",
			c.ID, gw, idx, ok, zoneGateway(z), c.IfName)
	}
	if z.Subnet6 != "" {
		gw6, _, ok := c.NS.DefaultRoute(t, netlink.FAMILY_V6)
		if !ok || gw6 != zoneGateway6(z) {
			t.Errorf("container %s: IPv6 default route via %v (found %v), want via %s", c.ID, gw6, ok, zoneGateway6(z))
		}
	}

	// The peer is a zonenet host veth enslaved to the zone bridge.
	peer := e.host.LinkByIndex(t, cl.Attrs().ParentIndex)
	att.HostVeth = peer.Attrs().Name
	if !cnitest.HostVethRE.MatchString(att.HostVeth) {
		t.Errorf("container %s: host veth %q does not match %s", c.ID, att.HostVeth, cnitest.HostVethRE)
	}
	if m := e.host.MasterName(t, peer); m != z.Bridge {
		t.Errorf("container %s: host veth %s is enslaved to %q, want bridge %q", c.ID, att.HostVeth, m, z.Bridge)
	}
	if !cnitest.IsUp(peer) {
		t.Errorf("container %s: host veth %s is down", c.ID, att.HostVeth)
	}
	if mtu := c.Conf.MTU; mtu != 0 && peer.Attrs().MTU != mtu {
		t.Errorf("container %s: host veth MTU %d, want %d", c.ID, peer.Attrs().MTU, mtu)
	}

	// The bridge carries the gateway.
	br := e.host.Link(t, z.Bridge)
	if br.Type() != "bridge" || !cnitest.IsUp(br) {
		t.Errorf("zone bridge %s: type %s up=%v, want an up bridge", z.Bridge, br.Type(), cnitest.IsUp(br))
	}
	brAddrs := e.host.Prefixes(t, z.Bridge, netlink.FAMILY_ALL)
	wantGW := netip.PrefixFrom(zoneGateway(z), netip.MustParsePrefix(z.Subnet).Bits())
	if !slices.Contains(brAddrs, wantGW) {
		t.Errorf("bridge %s: addresses %v, want the gateway %s", z.Bridge, brAddrs, wantGW)
	}
	if z.Subnet6 != "" {
		wantGW6 := netip.PrefixFrom(zoneGateway6(z), netip.MustParsePrefix(z.Subnet6).Bits())
		if !slices.Contains(brAddrs, wantGW6) {
			t.Errorf("bridge %s: addresses %v, want the IPv6 gateway %s", z.Bridge, brAddrs, wantGW6)
		}
	}
	if v := e.host.Sysctl(t, "net/ipv4/ip_forward"); v != "1" {
		t.Errorf("host ip_forward = %s after a bridge ADD, want 1", v)
	}

	// The result agrees with the kernel.
	if c.Res != nil {
		e.expectResultMatches(c, att, z)
	}
	// The store records the attachment.
	if l, ok := e.lease(c); !ok {
		t.Errorf("container %s: no lease in the store", c.ID)
	} else {
		for _, p := range att.IPs {
			if !slices.ContainsFunc(l.IPs, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
				t.Errorf("container %s: lease has %v, kernel has %s", c.ID, l.IPs, p)
			}
		}
		if l.HostVeth != att.HostVeth {
			t.Errorf("container %s: lease names host veth %q, kernel peer is %q", c.ID, l.HostVeth, att.HostVeth)
		}
	}
	return att
}

func (e *env) expectResultMatches(c *ctr, att attachment, z cnitest.Zone) {
	t := e.t
	t.Helper()
	r := c.Res
	i := cnitest.SandboxIface(r, c.IfName, c.NS.Path)
	if i < 0 {
		t.Errorf("result has no interface %s with sandbox %s: %s", c.IfName, c.NS.Path, c.Out)
		return
	}
	if r.Interfaces[i].Mac != att.MAC {
		t.Errorf("result MAC of %s is %q, kernel has %q", c.IfName, r.Interfaces[i].Mac, att.MAC)
	}
	var got []netip.Prefix
	for _, ipc := range r.IPs {
		p, ok := netipPrefix(ipc.Address.IP, ipc.Address.Mask)
		if !ok {
			t.Errorf("result address %v is not valid", ipc.Address)
			continue
		}
		got = append(got, p)
		if ipc.Interface == nil || *ipc.Interface != i {
			t.Errorf("result address %s does not point at interface #%d (%s)", p, i, c.IfName)
		}
		g, _ := netip.AddrFromSlice(ipc.Gateway)
		want := zoneGateway(z)
		if p.Addr().Is6() {
			want = zoneGateway6(z)
		}
		if g.Unmap() != want {
			t.Errorf("result gateway of %s is %v, want %s", p, ipc.Gateway, want)
		}
	}
	slices.SortFunc(got, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	kernel := slices.Clone(att.IPs)
	slices.SortFunc(kernel, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if !slices.Equal(got, kernel) {
		t.Errorf("result addresses %v, kernel has %v", got, kernel)
	}
}

func netipPrefix(ip []byte, mask []byte) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones := 0
	for _, b := range mask {
		for ; b != 0; b <<= 1 {
			ones++
		}
	}
	return netip.PrefixFrom(a, ones), true
}

// expectDetached checks that nothing of c remains: its interface, its host
// veth, its lease and any firewall rule naming its addresses.
func (e *env) expectDetached(c *ctr, att attachment) {
	t := e.t
	t.Helper()
	if c.NS != nil && fileExists(c.NS.Path) && c.NS.HasLink(t, c.IfName) {
		t.Errorf("container %s: %s still exists after DEL", c.ID, c.IfName)
	}
	if att.HostVeth != "" && e.host.HasLink(t, att.HostVeth) {
		t.Errorf("container %s: host veth %s still exists", c.ID, att.HostVeth)
	}
	if l, ok := e.lease(c); ok {
		t.Errorf("container %s: lease still in the store: %+v", c.ID, l)
	}
	for _, p := range att.IPs {
		if rules := rulesNaming(t, e.host, p.Addr()); len(rules) > 0 {
			t.Errorf("container %s: rules still name %s:\n%s", c.ID, p.Addr(), strings.Join(rules, "\n"))
		}
	}
	if rules := e.host.RulesMatching(t, safeID(c.ID)); len(rules) > 0 {
		t.Errorf("container %s: rules still name the container:\n%s", c.ID, strings.Join(rules, "\n"))
	}
}

// rulesNaming returns the iptables rules of ns that mention the address.
func rulesNaming(t *testing.T, ns *cnitest.NS, a netip.Addr) []string {
	t.Helper()
	re := regexp.MustCompile(`(^|[^0-9a-fA-F.:])` + regexp.QuoteMeta(a.String()) + `([^0-9a-fA-F.]|$)`)
	var out []string
	for _, r := range ns.RulesMatching(t, a.String()) {
		if re.MatchString(r) {
			out = append(out, r)
		}
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// expectCode fails unless cerr carries one of the codes.
func expectCode(t *testing.T, what string, cerr *types.Error, codes ...uint) {
	t.Helper()
	if cerr == nil {
		t.Fatalf("%s succeeded, want CNI error code %v", what, codes)
	}
	if !cnitest.IsCode(cerr, codes...) {
		t.Errorf("%s: code %d (%s; %s), want %v", what, cerr.Code, cerr.Msg, cerr.Details, codes)
	}
}

// mustJSON marshals v.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ip4 returns the container's first IPv4 address.
func (a attachment) ip4() netip.Addr {
	for _, p := range a.IPs {
		if p.Addr().Is4() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

func (a attachment) ip6() netip.Addr {
	for _, p := range a.IPs {
		if p.Addr().Is6() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

func hostPort(a netip.Addr, port int) string {
	return netip.AddrPortFrom(a, uint16(port)).String()
}

type typesIface = types100.Interface
