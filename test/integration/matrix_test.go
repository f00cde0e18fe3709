//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/test/cnitest"
)

var cniVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// atLeast compares dotted CNI versions.
func atLeast(v, min string) bool {
	var a, b [3]int
	fmt.Sscanf(v, "%d.%d.%d", &a[0], &a[1], &a[2])
	fmt.Sscanf(min, "%d.%d.%d", &b[0], &b[1], &b[2])
	return slices.Compare(a[:], b[:]) >= 0
}

// TestMatrix runs every verb of every mode at every CNI version the plugin
// supports, checking the kernel after each step and that results come back
// in the version asked for.
func TestMatrix(t *testing.T) {
	cnitest.RequireRoot(t)
	for _, mode := range []string{"bridge", "host", "none"} {
		for _, v := range cniVersions {
			t.Run(mode+"/"+v, func(t *testing.T) {
				t.Parallel()
				switch mode {
				case "bridge":
					matrixBridge(t, v)
				case "host":
					matrixHost(t, v)
				case "none":
					matrixNone(t, v)
				}
			})
		}
	}
}

// expectVersion checks the VERSION verb lists every version we test.
func expectVersion(t *testing.T, e *env) {
	t.Helper()
	out, cerr := e.run("VERSION", nil, e.conf)
	if cerr != nil {
		t.Fatalf("VERSION: code %d: %s", cerr.Code, cerr.Msg)
	}
	var info struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("VERSION output %q: %v", out, err)
	}
	for _, v := range cniVersions {
		if !slices.Contains(info.SupportedVersions, v) {
			t.Errorf("VERSION lists %v, missing %s", info.SupportedVersions, v)
		}
	}
}

// expectOldVerbsRefused checks that verbs newer than the configuration's
// version are refused with code 1 (incompatible version) and change
// nothing.
func expectOldVerbsRefused(t *testing.T, e *env, c *ctr, v string) {
	t.Helper()
	if !atLeast(v, "0.4.0") {
		_, cerr := e.run("CHECK", c, c.Conf)
		expectCode(t, "CHECK at "+v, cerr, 1)
	}
	if !atLeast(v, "1.1.0") {
		_, cerr := e.run("STATUS", nil, e.conf)
		expectCode(t, "STATUS at "+v, cerr, 1)
		_, cerr = e.run("GC", nil, e.conf.WithGC(nil))
		expectCode(t, "GC at "+v, cerr, 1)
		if _, ok := e.lease(c); !ok && c.Conf.Mode != "host" && c.Conf.Mode != "none" {
			t.Errorf("a refused GC at %s removed the lease", v)
		}
	}
}

func matrixBridge(t *testing.T, v string) {
	e := newEnv(t, v)
	expectVersion(t, e)
	z := e.conf.Zones[0]
	c := e.newCtr()
	e.add(c)
	att := e.expectAttached(c, z)

	// ipMasq: a masquerade rule for the zone subnet in a zonenet nat chain,
	// reached from POSTROUTING.
	expectMasquerade(t, e.host, z.Subnet)
	expectOldVerbsRefused(t, e, c, v)

	if atLeast(v, "0.4.0") {
		if cerr := e.check(c); cerr != nil {
			t.Errorf("CHECK after ADD: code %d: %s", cerr.Code, cerr.Msg)
		}
	}
	if atLeast(v, "1.1.0") {
		if cerr := e.status(); cerr != nil {
			t.Errorf("STATUS: code %d: %s", cerr.Code, cerr.Msg)
		}
		// GC keeping this attachment must not touch it.
		e.gc(c)
		if _, ok := e.lease(c); !ok {
			t.Errorf("GC with the attachment listed as valid removed its lease")
		}
		if !e.host.HasLink(t, att.HostVeth) || !c.NS.HasLink(t, c.IfName) {
			t.Errorf("GC with the attachment listed as valid removed its veth")
		}
	}
	e.del(c)
	e.expectDetached(c, att)
	e.del(c) // idempotent
	if atLeast(v, "1.1.0") {
		e.gc()
		if e.host.HasLink(t, z.Bridge) {
			t.Errorf("GC with no attachment left kept the zone bridge %s", z.Bridge)
		}
		if l := e.leases(); len(l) != 0 {
			t.Errorf("leases after GC: %v", cnitest.LeaseLines(l))
		}
	}
}

// expectMasquerade checks for a MASQUERADE rule naming subnet in a chain
// of ours, and that POSTROUTING leads to our chains.
func expectMasquerade(t *testing.T, host *cnitest.NS, subnet string) {
	t.Helper()
	ours := func(chain string) bool {
		return strings.HasPrefix(chain, "ZONENET") || strings.HasPrefix(chain, "ZN-")
	}
	var masq, jump bool
	var nat []string
	table := ""
	for _, l := range host.Iptables(t, false) {
		if strings.HasPrefix(l, "*") {
			table = l[1:]
			continue
		}
		if table != "nat" || !strings.HasPrefix(l, "-A ") {
			continue
		}
		nat = append(nat, l)
		f := strings.Fields(l)
		chain := f[1]
		if chain == "POSTROUTING" && slices.ContainsFunc(f, ours) {
			jump = true
		}
		if ours(chain) && strings.Contains(l, subnet) && strings.Contains(l, "MASQUERADE") {
			masq = true
		}
	}
	// The masquerade may sit in a per-zone chain that the subnet rule
	// jumps to; accept a subnet rule jumping to a chain holding MASQUERADE.
	if !masq {
		for _, l := range nat {
			f := strings.Fields(l)
			if !ours(f[1]) || !strings.Contains(l, subnet) {
				continue
			}
			if j := slices.Index(f, "-j"); j >= 0 && j+1 < len(f) {
				for _, m := range nat {
					if strings.HasPrefix(m, "-A "+f[j+1]+" ") && strings.Contains(m, "MASQUERADE") {
						masq = true
					}
				}
			}
		}
	}
	if !masq || !jump {
		t.Errorf("ipMasq: want POSTROUTING -> ZONENET/ZN- chain masquerading %s (jump %v, masquerade %v); nat table:\n%s",
			subnet, jump, masq, strings.Join(nat, "\n"))
	}
}

func matrixHost(t *testing.T, v string) {
	e := newEnv(t, v)
	e.conf.Mode = "host"
	expectVersion(t, e)
	hostAddr := netip.PrefixFrom(cnitest.Nth(cnitest.Subnet4(t), 10), 24)
	e.host.AddDummy(t, cnitest.Unique(t, "hd"), hostAddr.String())
	before := cnitest.Snapshot(t, e.host, "", "")

	// The runtime hands the host's own namespace.
	c := &ctr{NS: e.host, ID: "host-" + cnitest.Unique(t, ""), IfName: "eth0", Conf: e.conf}
	r := e.add(c)
	var got []netip.Prefix
	for _, ipc := range r.IPs {
		if p, ok := netipPrefix(ipc.Address.IP, ipc.Address.Mask); ok {
			got = append(got, p)
		}
	}
	if !slices.Contains(got, hostAddr) {
		t.Errorf("host-mode result lists %v, want the host address %s among them:\n%s", got, hostAddr, c.Out)
	}
	if d := before.Diff(cnitest.Snapshot(t, e.host, "", "")); d != "" {
		t.Errorf("host-mode ADD changed the host namespace:\n%s", d)
	}
	checkRemainingVerbs(t, e, c, v, before, "host")

	// Any other namespace is refused: host mode cannot share a stack the
	// plugin is not running in.
	other := e.newCtr()
	otherBefore := cnitest.Snapshot(t, other.NS, "", "")
	_, cerr := e.run("ADD", other, other.Conf)
	expectCode(t, "host-mode ADD with a container netns", cerr, 8)
	if cerr != nil && !strings.Contains(strings.ToLower(cerr.Msg+cerr.Details), "host") {
		t.Errorf("host-mode refusal does not explain itself: %q", cerr.Msg)
	}
	if d := otherBefore.Diff(cnitest.Snapshot(t, other.NS, "", "")); d != "" {
		t.Errorf("refused host-mode ADD changed the container namespace:\n%s", d)
	}
	if d := before.Diff(cnitest.Snapshot(t, e.host, "", "")); d != "" {
		t.Errorf("refused host-mode ADD changed the host namespace:\n%s", d)
	}
	if l := e.leases(); len(l) != 0 {
		t.Errorf("leases after a refused host-mode ADD: %v", cnitest.LeaseLines(l))
	}
}

func matrixNone(t *testing.T, v string) {
	e := newEnv(t, v)
	e.conf.Mode = "none"
	expectVersion(t, e)
	before := cnitest.Snapshot(t, e.host, "", "")
	c := e.newCtr()
	c.NS.SetLoopbackDown(t)
	r := e.add(c)

	links := c.NS.Links(t)
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		t.Errorf("none mode: container links %v, want only lo", names)
	}
	if !cnitest.IsUp(c.NS.Link(t, "lo")) {
		t.Errorf("none mode: lo is down in the container")
	}
	if a := c.NS.Prefixes(t, "lo", netlink.FAMILY_V4); !slices.Contains(a, netip.MustParsePrefix("127.0.0.1/8")) {
		t.Errorf("none mode: lo addresses %v", a)
	}
	if len(r.IPs) != 0 {
		t.Errorf("none mode: result has addresses %v, want none", r.IPs)
	}
	if !slices.ContainsFunc(r.Interfaces, func(i *typesIface) bool { return i.Name == "lo" }) {
		t.Errorf("none mode: result does not list lo:\n%s", c.Out)
	}
	if d := before.Diff(cnitest.Snapshot(t, e.host, "", "")); d != "" {
		t.Errorf("none-mode ADD changed the host namespace:\n%s", d)
	}
	checkRemainingVerbs(t, e, c, v, before, "none")
}

// checkRemainingVerbs runs what follows ADD for modes that leave the host
// untouched: CHECK, STATUS and GC where the version has them, DEL twice,
// and asserts the host namespace and the store end as they began.
func checkRemainingVerbs(t *testing.T, e *env, c *ctr, v string, before cnitest.State, mode string) {
	t.Helper()
	expectOldVerbsRefused(t, e, c, v)
	if atLeast(v, "0.4.0") {
		if cerr := e.check(c); cerr != nil {
			t.Errorf("CHECK: code %d: %s", cerr.Code, cerr.Msg)
		}
	}
	if atLeast(v, "1.1.0") {
		if cerr := e.status(); cerr != nil {
			t.Errorf("STATUS: code %d: %s", cerr.Code, cerr.Msg)
		}
		e.gc(c)
	}
	e.del(c)
	e.del(c)
	if d := before.Diff(cnitest.Snapshot(t, e.host, "", "")); d != "" {
		t.Errorf("%s-mode DEL changed the host namespace:\n%s", mode, d)
	}
	if l := e.leases(); len(l) != 0 {
		t.Errorf("leases after %s-mode DEL: %v", mode, cnitest.LeaseLines(l))
	}
}
