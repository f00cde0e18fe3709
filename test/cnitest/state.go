//go:build linux

package cnitest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/ipam"
)

// HostVethRE matches the names zonenet gives host-side veths.
var HostVethRE = regexp.MustCompile(`^zn[0-9a-f]{12}$`)

// HostVeths returns the zonenet host veths in the namespace, by name.
func (n *NS) HostVeths(t testing.TB) map[string]netlink.Link {
	t.Helper()
	out := map[string]netlink.Link{}
	for _, l := range n.Links(t) {
		if HostVethRE.MatchString(l.Attrs().Name) {
			out[l.Attrs().Name] = l
		}
	}
	return out
}

// MasterName returns the name of the link's master, or "".
func (n *NS) MasterName(t testing.TB, l netlink.Link) string {
	t.Helper()
	if l.Attrs().MasterIndex == 0 {
		return ""
	}
	return n.LinkByIndex(t, l.Attrs().MasterIndex).Attrs().Name
}

// Iptables returns `iptables-save` (or ip6tables-save when v6) of the
// namespace without comments and counters, one rule or chain per line.
func (n *NS) Iptables(t testing.TB, v6 bool) []string {
	t.Helper()
	bin := "iptables-save"
	if v6 {
		bin = "ip6tables-save"
	}
	out := n.Run(t, bin)
	var lines []string
	counters := regexp.MustCompile(` \[\d+:\d+\]$`)
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, counters.ReplaceAllString(l, ""))
	}
	return dropEmptyTables(lines)
}

// dropEmptyTables leaves out tables that hold nothing but built-in chains
// with an ACCEPT policy: the kernel keeps a table once anything has used
// it, so an empty one says nothing about what a program left behind.
func dropEmptyTables(lines []string) []string {
	var out, table []string
	empty := true
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "*"):
			table, empty = []string{l}, true
			continue
		case l == "COMMIT":
			if !empty {
				out = append(out, append(table, l)...)
			}
			table = nil
			continue
		case strings.HasPrefix(l, ":"):
			if f := strings.Fields(l); len(f) < 2 || f[1] != "ACCEPT" {
				empty = false // a user chain ("-") or a non-default policy
			}
		default:
			empty = false
		}
		if table != nil {
			table = append(table, l)
		} else {
			out = append(out, l)
		}
	}
	return out
}

// RulesMatching returns the iptables rules (v4 and v6, "-A" lines with
// their table) that contain every one of the substrings.
func (n *NS) RulesMatching(t testing.TB, subs ...string) []string {
	t.Helper()
	var out []string
	for _, v6 := range []bool{false, true} {
		table := ""
		for _, l := range n.Iptables(t, v6) {
			if strings.HasPrefix(l, "*") {
				table = l[1:]
				continue
			}
			if !strings.HasPrefix(l, "-A ") {
				continue
			}
			all := true
			for _, s := range subs {
				if !strings.Contains(l, s) {
					all = false
					break
				}
			}
			if all {
				out = append(out, table+": "+l)
			}
		}
	}
	return out
}

// IPSets returns the namespace's ipsets: name → members, as `ipset save`
// prints them.
func (n *NS) IPSets(t testing.TB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, l := range strings.Split(string(n.Run(t, "ipset", "save")), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "create":
			out[f[1]] = out[f[1]][:0:0]
		case len(f) >= 3 && f[0] == "add":
			out[f[1]] = append(out[f[1]], strings.Join(f[2:], " "))
		}
	}
	return out
}

// StoreName is the file zonenet keeps its store in, under dataDir.
const StoreName = "zonenet.db"

// StoreFile returns the store file under dataDir, or "" if there is none
// yet (opening it would create it, which would change what tests compare).
func StoreFile(t testing.TB, dataDir string) string {
	t.Helper()
	p := filepath.Join(dataDir, StoreName)
	if _, err := os.Stat(p); err != nil {
		if os.IsNotExist(err) {
			return ""
		}
		t.Fatalf("store %s: %v", p, err)
	}
	return p
}

// Leases returns the attachments the store under dataDir holds for the
// network, opening the store the way the plugin does (it waits for a
// running plugin to finish).
func Leases(t testing.TB, dataDir, network string) []ipam.Attachment {
	t.Helper()
	file := StoreFile(t, dataDir)
	if file == "" {
		return nil
	}
	s, err := ipam.Open(file, 30*time.Second)
	if err != nil {
		t.Fatalf("open store %s: %v", file, err)
	}
	defer s.Close()
	atts, err := s.List(network)
	if err != nil {
		t.Fatalf("list attachments of %s in %s: %v", network, file, err)
	}
	return atts
}

// LeaseLines renders attachments one per line, sorted.
func LeaseLines(atts []ipam.Attachment) []string {
	var out []string
	for _, a := range atts {
		out = append(out, fmt.Sprintf("lease %s/%s zone=%s mode=%s ips=%v veth=%s bridge=%s mac=%s",
			a.ContainerID, a.IfName, a.Zone, a.Mode, a.IPs, a.HostVeth, a.Bridge, a.MAC))
	}
	sort.Strings(out)
	return out
}

// LeasedIPs returns every address leased in the network.
func LeasedIPs(atts []ipam.Attachment) []netip.Addr {
	var out []netip.Addr
	for _, a := range atts {
		for _, p := range a.IPs {
			out = append(out, p.Addr())
		}
	}
	return out
}

// State is what a plugin may change in a host namespace and its store,
// rendered as text lines so two states can be diffed.
type State struct {
	Lines []string
}

// Snapshot records links (name, kind, master, MTU, flags, MAC), addresses,
// routes, ip_forward, the iptables/ip6tables rules and ipsets of the namespace, and
// the leases of the network in the store under dataDir (when dataDir is
// not empty).
func Snapshot(t testing.TB, ns *NS, dataDir, network string) State {
	t.Helper()
	var lines []string
	idx := map[int]string{}
	links := ns.Links(t)
	for _, l := range links {
		idx[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		lines = append(lines, fmt.Sprintf("link %s type=%s master=%s mtu=%d up=%v mac=%s",
			a.Name, l.Type(), idx[a.MasterIndex], a.MTU, IsUp(l), a.HardwareAddr))
		for _, p := range ns.Prefixes(t, a.Name, netlink.FAMILY_ALL) {
			lines = append(lines, fmt.Sprintf("addr %s %s", a.Name, p))
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		for _, r := range ns.Routes(t, fam) {
			if r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() {
				continue
			}
			lines = append(lines, fmt.Sprintf("route %v via %v dev %s", r.Dst, r.Gw, idx[r.LinkIndex]))
		}
	}
	lines = append(lines, "sysctl ip_forward="+ns.Sysctl(t, "net/ipv4/ip_forward"))
	for _, l := range ns.Iptables(t, false) {
		lines = append(lines, "ipt "+l)
	}
	for _, l := range ns.Iptables(t, true) {
		lines = append(lines, "ip6t "+l)
	}
	for name, members := range ns.IPSets(t) {
		lines = append(lines, "ipset "+name)
		for _, m := range members {
			lines = append(lines, "ipset "+name+" "+m)
		}
	}
	if dataDir != "" {
		lines = append(lines, LeaseLines(Leases(t, dataDir, network))...)
	}
	sort.Strings(lines)
	return State{Lines: lines}
}

// Diff describes the lines only in s (-) and only in o (+); "" if equal.
func (s State) Diff(o State) string {
	a, b := map[string]int{}, map[string]int{}
	for _, l := range s.Lines {
		a[l]++
	}
	for _, l := range o.Lines {
		b[l]++
	}
	var d []string
	for _, l := range s.Lines {
		if b[l] == 0 {
			d = append(d, "- "+l)
		} else {
			b[l]--
		}
	}
	for _, l := range o.Lines {
		if a[l] == 0 {
			d = append(d, "+ "+l)
		} else {
			a[l]--
		}
	}
	return strings.Join(d, "\n")
}
