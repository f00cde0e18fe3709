package acl

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// VXLANGuard keeps the overlay's UDP port closed to everyone but known
// peers. A VXLAN device decapsulates whatever arrives on its port with its
// VNI, so without it anyone who can reach a node's underlay address could
// inject frames into the overlay, with any inner source address, past the
// zone ACLs of the sending side. The set is an ipset (hash:ip) of peer
// underlay addresses that the overlay keeps in sync with the node list.
type VXLANGuard struct {
	Port    uint16 // the VXLAN device's UDP port
	PeerSet string // the ipset of peer underlay IPv4 addresses
}

// vxlanGuardComment marks the guard's rule; Ensure and Remove find their
// rule by it, whatever port or set it was written with.
const vxlanGuardComment = "zonenet vxlan: known peers only"

var ipsetName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,31}$`)

func (g VXLANGuard) validate() error {
	if g.Port == 0 {
		return fmt.Errorf("vxlan guard: port 0")
	}
	if !ipsetName.MatchString(g.PeerSet) {
		return fmt.Errorf("vxlan guard: peer set %q: want 1-31 letters, digits or _.:-", g.PeerSet)
	}
	return nil
}

// rule is the guard as iptables-save prints it, without the "-A INPUT ".
func (g VXLANGuard) rule() string {
	return fmt.Sprintf("-p udp -m udp --dport %d -m set ! --match-set %s src %s -j DROP",
		g.Port, g.PeerSet, comment(vxlanGuardComment))
}

// guardLines returns the INPUT rules that carry the guard's comment, in
// chain order and duplicates included, so each gets its own -D.
func guardLines(saved []byte) []string {
	var out []string
	for _, l := range strings.Split(string(saved), "\n") {
		if strings.HasPrefix(l, "-A INPUT ") && strings.Contains(l, comment(vxlanGuardComment)) {
			out = append(out, l)
		}
	}
	return out
}

// EnsureVXLANGuard installs, at the top of the filter table's INPUT chain,
// the rule that drops UDP to g.Port from sources not in g.PeerSet (IPv4:
// the underlay is IPv4). A guard with another port or set is replaced in
// the same restore; when the rule is already there nothing is written. The
// set must exist (overlay.Ensure creates it).
func EnsureVXLANGuard(r Runner, g VXLANGuard) error {
	if err := g.validate(); err != nil {
		return err
	}
	return locked(r, func() error {
		saved, err := r.Save(IPv4, "filter")
		if err != nil {
			return err
		}
		want := "-A INPUT " + g.rule()
		var b bytes.Buffer
		found := false
		for _, l := range guardLines(saved) {
			if l == want && !found {
				found = true
				continue
			}
			b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
		}
		if !found {
			// First in INPUT: an ACCEPT earlier in the chain (for
			// the underlay network, say) must not let outsiders by.
			b.WriteString("-I INPUT 1 " + g.rule() + "\n")
		}
		if b.Len() == 0 {
			return nil
		}
		if err := r.Restore(IPv4, "filter", b.Bytes()); err != nil {
			return fmt.Errorf("vxlan guard: %w", err)
		}
		return nil
	})
}

// HasVXLANGuard reports whether exactly the guard g is in place.
func HasVXLANGuard(r Runner, g VXLANGuard) (bool, error) {
	saved, err := r.Save(IPv4, "filter")
	if err != nil {
		return false, err
	}
	lines := guardLines(saved)
	return len(lines) == 1 && lines[0] == "-A INPUT "+g.rule(), nil
}

// RemoveVXLANGuard deletes the guard, whatever port or set it names, so the
// peer set can be destroyed. Nothing to remove is success.
func RemoveVXLANGuard(r Runner) error {
	return locked(r, func() error {
		saved, err := r.Save(IPv4, "filter")
		if err != nil {
			return err
		}
		var b bytes.Buffer
		for _, l := range guardLines(saved) {
			b.WriteString("-D" + strings.TrimPrefix(l, "-A") + "\n")
		}
		if b.Len() == 0 {
			return nil
		}
		if err := r.Restore(IPv4, "filter", b.Bytes()); err != nil {
			return fmt.Errorf("vxlan guard: %w", err)
		}
		return nil
	})
}
