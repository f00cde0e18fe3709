//go:build linux

package netdelay

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"

	"github.com/zonenet/zonenet/netns"
)

// Table is where the rule goes. mangle runs before filter at every hook,
// so the delay is applied before anything zonenet's filter chains decide,
// and it holds none of zonenet's chains, so the rule never has to be
// ordered among them.
const Table = "mangle"

// Match selects the packets to delay, as iptables matches in one built-in
// chain of the mangle table. At least one of In, Out, Src and Dst must be
// set, so a forgotten field cannot delay the loopback traffic of the
// namespace too.
type Match struct {
	// Chain is PREROUTING, INPUT, FORWARD, OUTPUT or POSTROUTING; ""
	// means POSTROUTING, which sees both forwarded and locally sent
	// packets on their way out.
	Chain    string
	In, Out  string       // interface names (-i, -o)
	Src, Dst netip.Prefix // -s, -d; both of one family
	Proto    string       // "tcp", "udp", "icmp", "icmpv6" or "" for any
}

func (m Match) chain() string {
	if m.Chain == "" {
		return "POSTROUTING"
	}
	return m.Chain
}

// ipv6 reports whether the match is for ip6tables.
func (m Match) ipv6() bool {
	return (m.Src.IsValid() && m.Src.Addr().Is6()) || (m.Dst.IsValid() && m.Dst.Addr().Is6()) || m.Proto == "icmpv6"
}

func (m Match) validate() error {
	ch := m.chain()
	switch ch {
	case "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING":
	default:
		return fmt.Errorf("netdelay: chain %q: want PREROUTING, INPUT, FORWARD, OUTPUT or POSTROUTING", m.Chain)
	}
	if m.In == "" && m.Out == "" && !m.Src.IsValid() && !m.Dst.IsValid() {
		return errors.New("netdelay: match: set at least one of in, out, src and dst")
	}
	if m.In != "" && (ch == "OUTPUT" || ch == "POSTROUTING") {
		return fmt.Errorf("netdelay: in %q: chain %s has no input interface", m.In, ch)
	}
	if m.Out != "" && (ch == "PREROUTING" || ch == "INPUT") {
		return fmt.Errorf("netdelay: out %q: chain %s has no output interface", m.Out, ch)
	}
	for _, n := range []string{m.In, m.Out} {
		if len(n) > 15 || strings.ContainsAny(n, " \t\n/") {
			return fmt.Errorf("netdelay: interface %q: not an interface name", n)
		}
	}
	if m.Src.IsValid() && m.Dst.IsValid() && m.Src.Addr().Is6() != m.Dst.Addr().Is6() {
		return fmt.Errorf("netdelay: src %s and dst %s: different families", m.Src, m.Dst)
	}
	switch m.Proto {
	case "", "tcp", "udp", "icmp", "icmpv6":
	default:
		return fmt.Errorf("netdelay: proto %q: want tcp, udp, icmp, icmpv6 or empty", m.Proto)
	}
	if (m.Proto == "icmp" && m.ipv6()) || (m.Proto == "icmpv6" && (m.Src.IsValid() && m.Src.Addr().Is4() || m.Dst.IsValid() && m.Dst.Addr().Is4())) {
		return fmt.Errorf("netdelay: proto %s does not fit the addresses' family", m.Proto)
	}
	return nil
}

// spec is the rule after the chain name: the match, a comment naming the
// queue and the caller's tag, and the NFQUEUE target. --queue-bypass lets
// packets through when no socket is bound to the queue, so a delayer that
// died leaves a working, undelayed path instead of a black hole.
func (m Match) spec(queue uint16, tag string) []string {
	var s []string
	if m.In != "" {
		s = append(s, "-i", m.In)
	}
	if m.Out != "" {
		s = append(s, "-o", m.Out)
	}
	if m.Src.IsValid() {
		s = append(s, "-s", m.Src.String())
	}
	if m.Dst.IsValid() {
		s = append(s, "-d", m.Dst.String())
	}
	if m.Proto != "" {
		s = append(s, "-p", m.Proto)
	}
	comment := "netdelay q" + strconv.Itoa(int(queue))
	if tag != "" {
		comment += " " + tag
	}
	return append(s, "-m", "comment", "--comment", comment,
		"-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(queue)), "--queue-bypass")
}

// iptables runs iptables (ip6tables for IPv6) inside the namespace at
// nsPath. The child is forked from a thread that is inside the namespace,
// so it starts there.
func iptables(nsPath string, v6 bool, args ...string) error {
	bin := "iptables"
	if v6 {
		bin = "ip6tables"
	}
	args = append([]string{"-w", "5", "-t", Table}, args...)
	return netns.Do(nsPath, func() error {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return &ruleError{cmd: bin + " " + strings.Join(args, " "), err: err, stderr: strings.TrimSpace(stderr.String())}
		}
		return nil
	})
}

type ruleError struct {
	cmd, stderr string
	err         error
}

func (e *ruleError) Error() string { return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr) }
func (e *ruleError) Unwrap() error { return e.err }

// exitCode is the exit status of a failed iptables run, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// RuleExists reports whether the rule of a delayer with that match, queue
// and tag is in the namespace's mangle table (iptables -C).
func RuleExists(nsPath string, m Match, queue uint16, tag string) (bool, error) {
	err := iptables(nsPath, m.ipv6(), append([]string{"-C", m.chain()}, m.spec(queue, tag)...)...)
	switch {
	case err == nil:
		return true, nil
	case exitCode(err) == 1:
		return false, nil
	}
	return false, err
}
