//go:build linux

package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/test/cnitest"
)

// listDoc is a policy of n rules, each allowing one address to the
// backend zone's tcp/5432, the i-th from addrs[i] when given, else from an
// address of 198.18.0.0/15 (never routed here).
func listDoc(n int, addrs map[int]netip.Addr) string {
	var b strings.Builder
	b.WriteString("version: 1\ndefaults: {intraZone: allow, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: allow}\nrules:\n")
	for i := range n {
		src, ok := addrs[i]
		if !ok {
			src = netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		}
		fmt.Fprintf(&b, "  - {name: db-%05d, source: %s, destination: {zone: backend, ports: [5432]}, protocol: tcp}\n", i, src)
	}
	return b.String()
}

var matchSet = regexp.MustCompile(`--match-set (zn-r\S+) src`)

// listState is what the host's kernel holds for the lists: the filter
// rules matching a set and the rules naming port 5432, and each zonenet
// set's members.
type listState struct {
	setRules, portRules []string
	sets                map[string][]netip.Prefix
}

func readListState(t *testing.T, host *cnitest.NS) listState {
	t.Helper()
	st := listState{sets: map[string][]netip.Prefix{}}
	table := ""
	for _, l := range host.Iptables(t, false) {
		if strings.HasPrefix(l, "*") {
			table = l[1:]
		}
		if table != "filter" || !strings.HasPrefix(l, "-A ") {
			continue
		}
		if matchSet.MatchString(l) {
			st.setRules = append(st.setRules, l)
		}
		if strings.Contains(l, "--dport 5432") {
			st.portRules = append(st.portRules, l)
		}
	}
	for _, name := range strings.Fields(string(host.Run(t, "ipset", "list", "-n"))) {
		if !strings.HasPrefix(name, "zn-r") { // rule lists, not anti-spoofing sets
			continue
		}
		st.sets[name] = []netip.Prefix{}
		for _, l := range strings.Split(string(host.Run(t, "ipset", "save", name)), "\n") {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != "add" {
				continue
			}
			p, err := netip.ParsePrefix(f[2])
			if err != nil {
				a := netip.MustParseAddr(f[2])
				p = netip.PrefixFrom(a, a.BitLen())
			}
			st.sets[name] = append(st.sets[name], p)
		}
	}
	return st
}

// expectOneSet checks that the lists are one set rule over one set of n
// members holding in and not out, and returns the set's name.
func (st listState) expectOneSet(t *testing.T, n int, in, out netip.Addr) string {
	t.Helper()
	if len(st.setRules) != 1 || len(st.portRules) != 1 {
		t.Fatalf("want one rule for the list, matching a set; rules matching a set %q, rules for port 5432: %d",
			st.setRules, len(st.portRules))
	}
	name := matchSet.FindStringSubmatch(st.setRules[0])[1]
	if len(st.sets) != 1 {
		t.Errorf("zonenet sets %v, want only %s", mapsKeys(st.sets), name)
	}
	members, ok := st.sets[name]
	if !ok {
		t.Fatalf("the rule names set %s, which the kernel does not hold", name)
	}
	if len(members) != n {
		t.Errorf("set %s holds %d members, want %d", name, len(members), n)
	}
	if !slices.Contains(members, netip.PrefixFrom(in, 32)) || slices.Contains(members, netip.PrefixFrom(out, 32)) {
		t.Errorf("set %s: want %s in it and %s not", name, in, out)
	}
	return name
}

// TestRulesetLargeSourceList: a policy of 1,000 rules, each allowing one
// source to the backend's port, is one rule over one ipset in the kernel;
// a real connection from a listed outside address passes and one from an
// unlisted one does not; re-applying with the list changed swaps the
// set's content in place; removing the network's filter leaves no set.
func TestRulesetLargeSourceList(t *testing.T) {
	const n = 1000
	if _, err := exec.LookPath("ipset"); err != nil {
		t.Fatal("the ipset binary is needed (make setup installs it): without it the plugin renders lists as plain rules")
	}
	e := newEnv(t, "1.1.0")
	back := e.zone("backend")
	e.conf.Zones = []cnitest.Zone{back}
	e.conf.IPMasq = cnitest.Bool(false)

	// Two outside namespaces routed through the host, on links of their own.
	var outs []*cnitest.NS
	var outAddrs []netip.Addr
	for range 2 {
		link := cnitest.Subnet4(t)
		hostSide, addr := cnitest.Nth(link, 1), cnitest.Nth(link, 2)
		ns := cnitest.NewNS(t, "znt-out")
		cnitest.Connect(t, e.host, netip.PrefixFrom(hostSide, 24).String(), ns, netip.PrefixFrom(addr, 24).String())
		ns.Run(t, "ip", "route", "add", "default", "via", hostSide.String())
		outs, outAddrs = append(outs, ns), append(outAddrs, addr)
	}
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The listed outside address sits in the middle of the list.
	e.conf.Extra = map[string]any{"policy": write("first.yaml", listDoc(n, map[int]netip.Addr{n / 2: outAddrs[0]}))}
	conflist := write("net.conf", string(e.conf.JSON(t)))

	c := e.newCtr()
	res := e.add(c)
	ctrAddr, _ := netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
	target := hostPort(ctrAddr, 5432)
	cnitest.EchoTCP(t, c.NS, target, "db")

	first := readListState(t, e.host)
	set := first.expectOneSet(t, n, outAddrs[0], outAddrs[1])
	cnitest.ExpectTCP(t, outs[0], target, "db")
	cnitest.ExpectNoTCP(t, outs[1], target)

	// The second outside address replaces the first in the list.
	if e.bins.Ctl == "" {
		t.Fatal("zonenetctl is not part of the build")
	}
	e.host.Run(t, e.bins.Ctl, "policy", "apply", "--conflist", conflist,
		"--policy", write("second.yaml", listDoc(n, map[int]netip.Addr{n / 2: outAddrs[1]})))
	second := readListState(t, e.host)
	if again := second.expectOneSet(t, n, outAddrs[1], outAddrs[0]); again != set {
		t.Errorf("the list moved from set %s to %s: a re-apply must update the set in place", set, again)
	}
	cnitest.ExpectNoTCP(t, outs[0], target)
	cnitest.ExpectTCP(t, outs[1], target, "db")

	// The network's filter goes with its last zone.
	e.del(c)
	e.gc()
	for _, name := range strings.Fields(string(e.host.Run(t, "ipset", "list", "-n"))) {
		if strings.HasPrefix(name, "zn-") {
			t.Errorf("set %s left after the network's filter was removed", name)
		}
	}
	for _, l := range e.host.Iptables(t, false) {
		if strings.Contains(l, "--match-set") {
			t.Errorf("rule left: %s", l)
		}
	}
}
