package acl

// Anti-spoofing ("the guard") under a policy. What leaves a container's
// host veth must carry one of its own addresses and its own MAC:
//
//   - MAC <-> port: the plugin locks the bridge port (learning off, locked
//     on, one static FDB entry for the container's MAC), so the bridge
//     drops frames from any other MAC before iptables sees them.
//   - address <-> MAC: per zone and family, an ipset of the zone's
//     containers: bitmap:ip,mac for an IPv4 zone of /16 or smaller (the
//     address must come with the MAC it was leased to), hash:ip otherwise
//     (the address must be one of the zone's leases).
//   - one per-network chain, ZN-SPF-<net>, entered from ZONENET-SPOOF for
//     packets that come in from one of the network's bridges through a
//     zonenet veth, returns what the sets accept and drops the rest.
//
// So a container costs one netlink message per address on ADD and DEL,
// no iptables exec and no netfilter commit; the chain and the sets are
// installed with the network's policy. A gap remains: IPv6 (and IPv4 zones
// larger than /16) bind the address to the zone, not to one container.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// ChainSpoof is the filter table's anti-spoofing stage, jumped to at
// position 1 of FORWARD and INPUT so it judges a packet before the policy
// chains and their established/related shortcut do.
const ChainSpoof = "ZONENET-SPOOF"

// spoofFrom are the built-in chains that jump to ChainSpoof.
var spoofFrom = []string{"FORWARD", "INPUT"}

// GuardZone is a zone as the guard sees it.
type GuardZone struct {
	Name    string
	Bridge  string
	Subnets []netip.Prefix
}

// Member is one container's entry in its zone's guard sets.
type Member struct {
	Network string
	Zone    GuardZone
	MAC     net.HardwareAddr
	IPs     []netip.Addr
}

// guardChain is the network's anti-spoofing chain.
func guardChain(network string) string { return ownerChain("ZN-SPF-", network) }

// GuardSetName names the guard set of a zone subnet: ipset names are at
// most 31 characters.
func GuardSetName(network, zone string, f Family) string {
	h := sha256.Sum256([]byte("guard\x00" + network + "\x00" + zone))
	return fmt.Sprintf("zn-g%d-%s", f, hex.EncodeToString(h[:])[:16])
}

// guardSpec is the set holding the members of one zone subnet.
func guardSpec(network, zone string, s netip.Prefix) SetSpec {
	f := familyOf(s.Addr())
	spec := SetSpec{Name: GuardSetName(network, zone, f), Family: f, Type: "hash:ip"}
	if f == IPv4 && s.Bits() >= 16 {
		spec.Type, spec.Range = "bitmap:ip,mac", s.Masked()
	}
	return spec
}

// setMatch is the set match of a guard set: with the MAC for bitmap:ip,mac.
func setMatch(spec SetSpec) string {
	if spec.Type == "bitmap:ip,mac" {
		return "-m set --match-set " + spec.Name + " src,src"
	}
	return "-m set --match-set " + spec.Name + " src"
}

// zoneSet is the guard set of one zone subnet.
type zoneSet struct {
	spec   SetSpec
	subnet netip.Prefix
	zone   string
}

func guardSpecs(network string, zones []GuardZone, f Family) []zoneSet {
	var out []zoneSet
	for _, z := range zones {
		for _, s := range z.Subnets {
			if familyOf(s.Addr()) == f {
				out = append(out, zoneSet{guardSpec(network, z.Name, s), s.Masked(), z.Name})
			}
		}
	}
	return out
}

// ApplyGuard installs a network's anti-spoofing chain and sets, once per
// family its zones use. Idempotent: the chain is rebuilt whole in one
// restore, the sets keep their members.
func ApplyGuard(r Runner, sets MemberSets, network string, zones []GuardZone) error {
	return locked(r, func() error {
		for _, f := range []Family{IPv4, IPv6} {
			specs := guardSpecs(network, zones, f)
			if len(specs) == 0 {
				continue
			}
			for _, s := range specs {
				if err := sets.Ensure(s.spec); err != nil {
					return err
				}
			}
			saved, err := r.Save(f, "filter")
			if err != nil {
				return err
			}
			var b bytes.Buffer
			renderGuard(&b, parseSave(saved), f, network, zones)
			if err := r.Restore(f, "filter", b.Bytes()); err != nil {
				return err
			}
		}
		return nil
	})
}

func renderGuard(b *bytes.Buffer, rs ruleSet, f Family, network string, zones []GuardZone) {
	if !rs.chains[ChainSpoof] {
		fmt.Fprintf(b, ":%s - [0:0]\n", ChainSpoof)
	}
	for _, from := range spoofFrom {
		if !rs.hasJump(from, ChainSpoof) {
			b.WriteString(insertFirst(jumpLine(from, "", "zonenet anti-spoofing", ChainSpoof)) + "\n")
		}
	}
	ch := guardChain(network)
	owner := "zonenet " + network + " anti-spoofing"
	fmt.Fprintf(b, ":%s - [0:0]\n", ch)
	if f == IPv6 {
		// Neighbour discovery and duplicate address detection; the
		// locked bridge port still binds them to the container's MAC.
		for _, src := range []string{"fe80::/10", "::/128"} {
			b.WriteString(jumpLine(ch, "-s "+src, owner+" link-local", "RETURN") + "\n")
		}
	}
	for _, s := range guardSpecs(network, zones, f) {
		b.WriteString(jumpLine(ch, "-s "+s.subnet.String()+" "+setMatch(s.spec), owner+" zone "+s.zone, "RETURN") + "\n")
	}
	b.WriteString(jumpLine(ch, "", owner+" spoofed", "DROP") + "\n")
	want := map[string]bool{}
	for _, z := range zones {
		if z.Bridge == "" || !slices.ContainsFunc(z.Subnets, func(s netip.Prefix) bool { return familyOf(s.Addr()) == f }) {
			continue
		}
		l := jumpLine(ChainSpoof, "-i "+z.Bridge+" -m physdev --physdev-in zn+", "zonenet "+network+" zone "+z.Name, ch)
		want[l] = true
		if !rs.rules[l] {
			b.WriteString(l + "\n")
		}
	}
	for _, l := range rs.sortedRules() {
		if strings.HasPrefix(l, "-A "+ChainSpoof+" ") && strings.HasSuffix(l, " -j "+ch) && !want[l] {
			b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
		}
	}
}

// RemoveGuard removes a network's anti-spoofing chain and sets, and the
// anti-spoofing stage when no other network uses it. Missing pieces are
// fine.
func RemoveGuard(r Runner, sets MemberSets, network string, zones []GuardZone) error {
	return locked(r, func() error {
		for _, f := range []Family{IPv4, IPv6} {
			if err := removeGuardLocked(r, f, network); err != nil {
				return err
			}
			for _, s := range guardSpecs(network, zones, f) {
				if err := sets.Destroy(s.spec.Name); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func removeGuardLocked(r Runner, f Family, network string) error {
	saved, err := r.Save(f, "filter")
	if err != nil {
		return err
	}
	rs := parseSave(saved)
	ch := guardChain(network)
	// Two restores: nf_tables refuses to delete a chain whose last jump
	// goes in the same commit.
	var b, del bytes.Buffer
	others := false
	for _, l := range rs.sortedRules() {
		if !strings.HasPrefix(l, "-A "+ChainSpoof+" ") {
			continue
		}
		if strings.HasSuffix(l, " -j "+ch) {
			b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
		} else {
			others = true
		}
	}
	if rs.chains[ch] {
		fmt.Fprintf(&b, "-F %s\n", ch)
		fmt.Fprintf(&del, "-X %s\n", ch)
	}
	if rs.chains[ChainSpoof] && !others {
		for _, l := range rs.sortedRules() {
			for _, from := range spoofFrom {
				if strings.HasPrefix(l, "-A "+from+" ") && strings.HasSuffix(l, " -j "+ChainSpoof) {
					b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
				}
			}
		}
		fmt.Fprintf(&del, "-X %s\n", ChainSpoof)
	}
	for _, body := range []*bytes.Buffer{&b, &del} {
		if body.Len() == 0 {
			continue
		}
		if err := r.Restore(f, "filter", body.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// GuardIntact reports whether every guard set of the network exists and
// is used by a rule: a flushed filter table (`iptables -F`, a firewall
// reload) leaves the sets unreferenced. One netlink dump per set, no exec,
// so ADD can afford it.
func GuardIntact(sets MemberSets, network string, zones []GuardZone) (bool, error) {
	for _, f := range []Family{IPv4, IPv6} {
		for _, s := range guardSpecs(network, zones, f) {
			info, found, err := sets.Info(s.spec.Name)
			if err != nil {
				return false, err
			}
			if !found || info.References == 0 {
				return false, nil
			}
		}
	}
	return true, nil
}

// memberEntries are the set entries of a container, by set name.
func memberEntries(m Member) map[string][]SetEntry {
	out := map[string][]SetEntry{}
	for _, a := range m.IPs {
		for _, s := range m.Zone.Subnets {
			if !s.Contains(a) {
				continue
			}
			spec := guardSpec(m.Network, m.Zone.Name, s)
			e := SetEntry{Addr: a}
			if spec.Type == "bitmap:ip,mac" {
				e.MAC = m.MAC
			}
			out[spec.Name] = append(out[spec.Name], e)
		}
	}
	return out
}

// AddMember binds a container's addresses (and MAC) in its zone's sets.
func AddMember(sets MemberSets, m Member) error {
	for name, es := range memberEntries(m) {
		for _, e := range es {
			if err := sets.Add(name, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// RemoveMember removes a container's entries; missing ones are fine.
func RemoveMember(sets MemberSets, m Member) error {
	for name, es := range memberEntries(m) {
		for _, e := range es {
			if err := sets.Del(name, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// HasMember reports whether every entry of a container is in its sets,
// bound to its MAC where the set binds one.
func HasMember(sets MemberSets, m Member) (bool, error) {
	for name, es := range memberEntries(m) {
		info, found, err := sets.Info(name)
		if err != nil || !found {
			return false, err
		}
		for _, e := range es {
			ok := false
			for _, have := range info.Entries {
				if have.Addr == e.Addr && (e.MAC == nil || bytes.Equal(have.MAC, e.MAC)) {
					ok = true
				}
			}
			if !ok {
				return false, nil
			}
		}
	}
	return true, nil
}

// PolicyInstalled reports whether the network's policy and anti-spoofing
// chains are in place and jumped to, for every family in fams: the
// thorough check (one save per family) that CHECK affords and ADD does not.
func PolicyInstalled(r Runner, network string, fams []Family) (bool, error) {
	for _, f := range fams {
		saved, err := r.Save(f, "filter")
		if err != nil {
			return false, err
		}
		rs := parseSave(saved)
		for _, j := range [][2]string{
			{"FORWARD", ChainSpoof}, {"INPUT", ChainSpoof}, {ChainSpoof, guardChain(network)},
			{"FORWARD", ChainForward}, {ChainForward, ownerChain("ZN-FWD-", network)},
			{"INPUT", ChainInput}, {ChainInput, ownerChain("ZN-IN-", network)},
		} {
			if !rs.hasJump(j[0], j[1]) {
				return false, nil
			}
		}
	}
	return true, nil
}
