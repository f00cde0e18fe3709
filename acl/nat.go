package acl

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/zonenet/zonenet/conf"
)

// Masq is a zone's egress NAT: its subnet is masqueraded towards every
// destination that is not a zone of the same network.
type Masq struct {
	Network, Zone string
	Subnet        netip.Prefix
	Internal      []netip.Prefix // every zone subnet of the network
}

// Family is the address family of the zone subnet.
func (m Masq) Family() Family { return familyOf(m.Subnet.Addr()) }

func (m Masq) chain() string { return ownerChain("ZN-MASQ-", m.Network, m.Zone) }

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// jumpLine renders "-A from [match] comment -j to" in the order
// iptables-save prints it, so presence checks can compare lines.
func jumpLine(from, match, owner, to string) string {
	l := "-A " + from
	if match != "" {
		l += " " + match
	}
	return l + " " + comment(owner) + " -j " + to
}

// hasJump reports whether chain from holds a rule jumping to target.
func (rs ruleSet) hasJump(from, target string) bool {
	for l := range rs.rules {
		if strings.HasPrefix(l, "-A "+from+" ") && strings.HasSuffix(l, " -j "+target) {
			return true
		}
	}
	return false
}

// EnsureMasq installs (or repairs) a zone's egress NAT in one restore.
func EnsureMasq(r Runner, m Masq) error {
	return locked(r, func() error { return ensureMasqLocked(r, m) })
}

func ensureMasqLocked(r Runner, m Masq) error {
	f := m.Family()
	saved, err := r.Save(f, "nat")
	if err != nil {
		return err
	}
	rs := parseSave(saved)
	var b bytes.Buffer
	if !rs.chains[ChainPostrouting] {
		fmt.Fprintf(&b, ":%s - [0:0]\n", ChainPostrouting)
	}
	if !rs.hasJump("POSTROUTING", ChainPostrouting) {
		b.WriteString(jumpLine("POSTROUTING", "", "zonenet egress NAT", ChainPostrouting) + "\n")
	}
	ch := m.chain()
	owner := "zonenet " + m.Network + "/" + m.Zone
	// Declaring an existing chain under --noflush flushes it: the zone
	// chain is rebuilt whole, atomically with the rest of the commit.
	fmt.Fprintf(&b, ":%s - [0:0]\n", ch)
	internal := append([]netip.Prefix(nil), m.Internal...)
	sort.Slice(internal, func(i, j int) bool { return internal[i].String() < internal[j].String() })
	for _, p := range internal {
		if familyOf(p.Addr()) == f {
			b.WriteString(jumpLine(ch, "-d "+p.String(), owner+" between zones", "RETURN") + "\n")
		}
	}
	multicast := "224.0.0.0/4"
	if f == IPv6 {
		multicast = "ff00::/8"
	}
	b.WriteString(jumpLine(ch, "-d "+multicast, owner+" multicast", "RETURN") + "\n")
	b.WriteString(jumpLine(ch, "", owner+" egress", "MASQUERADE") + "\n")
	if !rs.hasJump(ChainPostrouting, ch) {
		b.WriteString(jumpLine(ChainPostrouting, "-s "+m.Subnet.String(), owner, ch) + "\n")
	}
	return r.Restore(f, "nat", b.Bytes())
}

// HasMasq reports whether a zone's egress NAT is in place.
func HasMasq(r Runner, m Masq) (bool, error) {
	saved, err := r.Save(m.Family(), "nat")
	if err != nil {
		return false, err
	}
	rs := parseSave(saved)
	ch := m.chain()
	return rs.hasJump("POSTROUTING", ChainPostrouting) && rs.hasJump(ChainPostrouting, ch) &&
		rs.hasJump(ch, "MASQUERADE"), nil
}

// RemoveMasq removes a zone's egress NAT; missing pieces are fine.
func RemoveMasq(r Runner, f Family, network, zone string) error {
	return removeOwnerChain(r, f, "nat", ChainPostrouting, Masq{Network: network, Zone: zone}.chain())
}

// removeOwnerChain deletes every jump from parent to ch, then ch itself,
// in one restore. Nothing to do is success.
func removeOwnerChain(r Runner, f Family, table, parent, ch string) error {
	return locked(r, func() error { return removeOwnerChainLocked(r, f, table, parent, ch) })
}

func removeOwnerChainLocked(r Runner, f Family, table, parent, ch string) error {
	saved, err := r.Save(f, table)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	renderRemoveOwnerChain(&b, parseSave(saved), parent, ch)
	if b.Len() == 0 {
		return nil
	}
	return r.Restore(f, table, b.Bytes())
}

// renderRemoveOwnerChain writes the lines deleting every jump from parent
// to ch, then ch itself; nothing when neither exists.
func renderRemoveOwnerChain(b *bytes.Buffer, rs ruleSet, parent, ch string) {
	for _, l := range rs.sortedRules() {
		if strings.HasPrefix(l, "-A "+parent+" ") && strings.HasSuffix(l, " -j "+ch) {
			b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
		}
	}
	if rs.chains[ch] {
		fmt.Fprintf(b, "-F %s\n-X %s\n", ch, ch)
	}
}

// HostPorts are one container's published ports.
type HostPorts struct {
	Network, ContainerID, IfName string
	IP                           netip.Addr
	Mappings                     []conf.PortMapping
}

func (h HostPorts) chain() string {
	return ownerChain("ZN-DNAT-", h.Network, h.ContainerID, h.IfName)
}

// AddHostPorts installs DNAT rules for a container's port mappings, in one
// restore after one save (to jump to the top-level chain only once).
func AddHostPorts(r Runner, h HostPorts) error {
	return locked(r, func() error {
		saved, err := r.Save(familyOf(h.IP), "nat")
		if err != nil {
			return err
		}
		var b bytes.Buffer
		renderHostPorts(&b, parseSave(saved), h)
		return r.Restore(familyOf(h.IP), "nat", b.Bytes())
	})
}

// renderHostPorts writes the restore lines of a container's DNAT chain,
// given the nat table as it is.
func renderHostPorts(b *bytes.Buffer, rs ruleSet, h HostPorts) {
	f := familyOf(h.IP)
	if !rs.chains[ChainHostports] {
		fmt.Fprintf(b, ":%s - [0:0]\n", ChainHostports)
	}
	for _, from := range []string{"PREROUTING", "OUTPUT"} {
		if !rs.hasJump(from, ChainHostports) {
			b.WriteString(jumpLine(from, "-m addrtype --dst-type LOCAL", "zonenet published ports", ChainHostports) + "\n")
		}
	}
	ch := h.chain()
	owner := fmt.Sprintf("zonenet %s %s/%s", h.Network, h.ContainerID, h.IfName)
	fmt.Fprintf(b, ":%s - [0:0]\n", ch)
	to := h.IP.String()
	if f == IPv6 {
		to = "[" + to + "]"
	}
	for _, m := range h.Mappings {
		if m.HostIP.IsValid() && familyOf(m.HostIP) != f {
			continue
		}
		match := ""
		if m.HostIP.IsValid() && !m.HostIP.IsUnspecified() {
			match = "-d " + m.HostIP.String() + "/" + fmt.Sprint(m.HostIP.BitLen()) + " "
		}
		match += fmt.Sprintf("-p %s -m %s --dport %d", m.Protocol, m.Protocol, m.HostPort)
		b.WriteString(jumpLine(ch, match, owner, fmt.Sprintf("DNAT --to-destination %s:%d", to, m.ContainerPort)) + "\n")
	}
	if !rs.hasJump(ChainHostports, ch) {
		b.WriteString(jumpLine(ChainHostports, "", owner, ch) + "\n")
	}
}

// RemoveHostPorts removes a container's DNAT rules; missing is fine.
func RemoveHostPorts(r Runner, h HostPorts) error {
	return removeOwnerChain(r, familyOf(h.IP), "nat", ChainHostports, h.chain())
}

// HasHostPorts reports whether a container's DNAT chain is in place.
func HasHostPorts(r Runner, h HostPorts) (bool, error) {
	saved, err := r.Save(familyOf(h.IP), "nat")
	if err != nil {
		return false, err
	}
	return parseSave(saved).hasJump(ChainHostports, h.chain()), nil
}

// RemoveUnused removes the top-level NAT chains, and their jumps from the
// built-in chains, when no zone or container of any network uses them.
func RemoveUnused(r Runner, f Family) error {
	return locked(r, func() error { return removeUnusedLocked(r, f) })
}

func removeUnusedLocked(r Runner, f Family) error {
	saved, err := r.Save(f, "nat")
	if err != nil {
		return err
	}
	rs := parseSave(saved)
	var b bytes.Buffer
	for _, top := range []struct {
		chain string
		from  []string
	}{{ChainPostrouting, []string{"POSTROUTING"}}, {ChainHostports, []string{"PREROUTING", "OUTPUT"}}} {
		if !rs.chains[top.chain] || rs.hasRulesIn(top.chain) {
			continue
		}
		for _, from := range top.from {
			for _, l := range rs.sortedRules() {
				if strings.HasPrefix(l, "-A "+from+" ") && strings.HasSuffix(l, " -j "+top.chain) {
					b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
				}
			}
		}
		fmt.Fprintf(&b, "-X %s\n", top.chain)
	}
	if b.Len() == 0 {
		return nil
	}
	return r.Restore(f, "nat", b.Bytes())
}

func (rs ruleSet) hasRulesIn(chain string) bool {
	for l := range rs.rules {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			return true
		}
	}
	return false
}

func (rs ruleSet) sortedRules() []string {
	out := make([]string, 0, len(rs.rules))
	for l := range rs.rules {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}
