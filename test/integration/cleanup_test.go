//go:build linux

package integration

import (
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/test/cnitest"
)

// hostState is what a cleanup may change in the host namespace: links,
// addresses, routes and every table (cnitest.Snapshot), plus each link's
// alias and the ipsets.
func hostState(t *testing.T, ns *cnitest.NS) cnitest.State {
	t.Helper()
	s := cnitest.Snapshot(t, ns, "", "")
	for _, l := range ns.Links(t) {
		s.Lines = append(s.Lines, "alias "+l.Attrs().Name+"="+l.Attrs().Alias)
	}
	for _, n := range ipsets(t, ns) {
		s.Lines = append(s.Lines, "ipset "+n)
	}
	slices.Sort(s.Lines)
	return s
}

func ipsets(t *testing.T, ns *cnitest.NS) []string {
	t.Helper()
	return strings.Fields(string(ns.Run(t, "ipset", "list", "-n")))
}

// run4and6 runs the same iptables arguments for both families.
func run4and6(t *testing.T, ns *cnitest.NS, args ...string) {
	t.Helper()
	ns.Run(t, append([]string{"iptables"}, args...)...)
	ns.Run(t, append([]string{"ip6tables"}, args...)...)
}

// TestCleanupLeftovers: once every container of a policy network with
// NAT and published ports is deleted (no GC), zonenetctl cleanup removes
// every chain, rule, ipset and bridge of zonenet's, in every table of
// both families, including leftovers no current code path makes; it
// leaves a user chain, a user ipset, a user bridge and a bridge with a
// look-alike alias untouched, and only unmarks the bridge zonenet
// adopted. With a container still attached it refuses and changes
// nothing; a second run is a no-op.
func TestCleanupLeftovers(t *testing.T) {
	cnitest.RequireRoot(t)
	t.Parallel()
	var (
		userChain, hookChain, userSet string
		userBr, lookalike, lookAlias  string
		foreignTables                 []string
	)
	const userPort = "zn0123456789ab" // named like a container's host veth
	tp := newACLTopo(t, aclTopoOptions{ipMasq: true, hostPort: 18100, userBridge: "backend", beforeAdd: func(e *env) {
		h := e.host
		userChain, hookChain = strings.ToUpper(cnitest.Unique(t, "usr")), strings.ToUpper(cnitest.Unique(t, "hook"))
		userSet = "user-" + cnitest.Unique(t, "")
		h.Run(t, "ipset", "create", userSet, "hash:ip")
		run4and6(t, h, "-N", userChain)
		run4and6(t, h, "-A", "INPUT", "-j", userChain)
		h.Run(t, "iptables", "-A", userChain, "-s", "192.0.2.0/24", "-j", "RETURN")
		h.Run(t, "iptables", "-A", userChain, "-m", "set", "--match-set", userSet, "src", "-j", "RETURN")
		h.Run(t, "ip6tables", "-A", userChain, "-s", "2001:db8::/32", "-j", "RETURN")
		run4and6(t, h, "-N", hookChain)
		run4and6(t, h, "-A", "FORWARD", "-j", hookChain)
		run4and6(t, h, "-A", hookChain, "-j", "RETURN")
		userBr, lookalike = cnitest.Unique(t, "ub"), cnitest.Unique(t, "ul")
		lookAlias = "zonenetx:" + e.conf.Name + ":frontend"
		h.Run(t, "ip", "link", "add", userBr, "type", "bridge")
		h.Run(t, "ip", "link", "add", lookalike, "type", "bridge")
		h.Run(t, "ip", "link", "set", lookalike, "alias", lookAlias)
		h.AddVethPair(t, userPort, cnitest.Unique(t, "up"))
		h.Run(t, "ip", "link", "set", userPort, "master", userBr)
		foreignTables = append(h.Iptables(t, false), h.Iptables(t, true)...)
	}})
	e, h := tp.e, tp.e.host
	front, back, mgmt := e.conf.Zones[0], e.conf.Zones[1], e.conf.Zones[2]

	// What a later version might leave: an ipset of ours used by a chain
	// of ours in mangle, a chain of ours in raw, a foreign chain's jump
	// into ours.
	ourSet := "zn-" + cnitest.Unique(t, "left")
	ourChain := "ZN-LEFT-" + strings.ToUpper(cnitest.Unique(t, ""))
	h.Run(t, "ipset", "create", ourSet, "hash:ip")
	h.Run(t, "iptables", "-t", "mangle", "-N", ourChain)
	h.Run(t, "iptables", "-t", "mangle", "-A", ourChain, "-m", "set", "--match-set", ourSet, "src", "-j", "RETURN")
	h.Run(t, "iptables", "-t", "mangle", "-A", "PREROUTING", "-j", ourChain)
	h.Run(t, "ip6tables", "-t", "raw", "-N", ourChain)
	h.Run(t, "ip6tables", "-t", "raw", "-A", "PREROUTING", "-j", ourChain)
	run4and6(t, h, "-I", hookChain, "1", "-j", "ZONENET-FORWARD")
	if len(h.RulesMatching(t, "ZN-DNAT-")) == 0 || len(h.RulesMatching(t, "ZN-MASQ-")) == 0 ||
		len(h.RulesMatching(t, "ZN-SPF-")) == 0 || len(h.RulesMatching(t, "ZN-FWD-")) == 0 {
		t.Fatalf("the topology lacks published ports, NAT, anti-spoofing or policy chains:\n%s", strings.Join(zonenetLines(t, h), "\n"))
	}

	// A container still attached: refused, nothing changed, also in a
	// dry run.
	live := hostState(t, h)
	for _, args := range [][]string{{"cleanup"}, {"cleanup", "--dry-run"}} {
		code, out, errOut := ctl(t, e, h, args...)
		if code != 1 || out != "" || !strings.Contains(errOut, front.Bridge) || !strings.Contains(errOut, "--force") {
			t.Errorf("%v with containers attached: exit %d, stdout %q, stderr %q; want 1 and a refusal naming %s",
				args, code, out, errOut, front.Bridge)
		}
	}
	if d := live.Diff(hostState(t, h)); d != "" {
		t.Errorf("refused cleanup changed the host:\n%s", d)
	}

	tp.delAll()
	gone := hostState(t, h)
	code, dry, errOut := ctl(t, e, h, "cleanup", "--dry-run")
	if code != 0 {
		t.Fatalf("cleanup --dry-run: exit %d: %s", code, errOut)
	}
	if d := gone.Diff(hostState(t, h)); d != "" {
		t.Errorf("cleanup --dry-run changed the host:\n%s", d)
	}
	code, out, errOut := ctl(t, e, h, "cleanup")
	if code != 0 {
		t.Fatalf("cleanup: exit %d: %s\n%s", code, errOut, out)
	}
	t.Logf("cleanup:\n%s", out)
	if strings.ReplaceAll(dry, "would remove ", "removed ") != out {
		t.Errorf("the dry run announced:\n%s\nthe cleanup did:\n%s", dry, out)
	}
	for _, want := range []string{
		"bridge " + front.Bridge + " ", "bridge " + mgmt.Bridge + " ", "of bridge " + back.Bridge + " ",
		"ipset " + ourSet, "iptables mangle chain " + ourChain, "ip6tables raw chain " + ourChain,
		"rule: -A " + hookChain + " -j ZONENET-FORWARD",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("cleanup output lacks %q", want)
		}
	}

	if left := zonenetLines(t, h); len(left) > 0 {
		t.Errorf("left after cleanup:\n%s", strings.Join(left, "\n"))
	}
	sets := ipsets(t, h)
	if slices.ContainsFunc(sets, func(n string) bool { return strings.HasPrefix(n, "zn-") }) || !slices.Contains(sets, userSet) {
		t.Errorf("ipsets after cleanup %q, want %s and none of ours", sets, userSet)
	}
	for _, l := range h.Links(t) {
		if a := l.Attrs().Alias; strings.HasPrefix(a, "zonenet:") || strings.HasPrefix(a, "zonenet-new:") || strings.HasPrefix(a, "zonenet-adopted:") {
			t.Errorf("link %s still marked %q", l.Attrs().Name, a)
		}
	}
	for _, br := range []string{front.Bridge, mgmt.Bridge} {
		if h.HasLink(t, br) {
			t.Errorf("bridge %s, made by zonenet, survived the cleanup", br)
		}
	}
	if !h.HasLink(t, back.Bridge) {
		t.Errorf("cleanup deleted %s, a bridge the user made", back.Bridge)
	}
	if a := h.Link(t, lookalike).Attrs().Alias; a != lookAlias {
		t.Errorf("bridge %s has alias %q, want its own %q", lookalike, a, lookAlias)
	}
	if m := h.MasterName(t, h.Link(t, userPort)); !h.HasLink(t, userBr) || m != userBr {
		t.Errorf("user bridge %s and its port %s: port's master is %q", userBr, userPort, m)
	}
	if all := append(h.Iptables(t, false), h.Iptables(t, true)...); !slices.Equal(all, foreignTables) {
		t.Errorf("the tables differ from before zonenet:\n%s", lineDiff(foreignTables, all))
	}

	clean := hostState(t, h)
	code, out, errOut = ctl(t, e, h, "cleanup")
	if code != 0 || out != "nothing of zonenet's left\n" {
		t.Errorf("second cleanup: exit %d, stdout %q, stderr %q; want 0 and nothing to do", code, out, errOut)
	}
	if d := clean.Diff(hostState(t, h)); d != "" {
		t.Errorf("second cleanup changed the host:\n%s", d)
	}
}
