// Package acl owns zonenet's iptables state: fixed top-level chains jumped
// to once from the built-in chains, per-zone and per-container chains under
// them, every rule commented with its owner. Bulk changes are rendered
// deterministically and applied with one `iptables-restore --noflush` so a
// change is one netfilter commit, not one exec per rule.
package acl

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Family selects iptables or ip6tables.
type Family int

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// Runner applies and reads rule sets. The real one execs iptables-restore
// and iptables-save; tests may substitute a fake.
type Runner interface {
	// Restore applies a rendered table body with --noflush.
	Restore(f Family, table string, body []byte) error
	// Save returns the rules of one table in iptables-save format.
	Save(f Family, table string) ([]byte, error)
}

// Exec is the Runner over the iptables binaries.
type Exec struct {
	// Timeout bounds each exec; 0 means 30s.
	Timeout time.Duration
}

func (e Exec) ctx() (context.Context, context.CancelFunc) {
	t := e.Timeout
	if t == 0 {
		t = 30 * time.Second
	}
	return context.WithTimeout(context.Background(), t)
}

func binary(f Family, suffix string) string {
	if f == IPv6 {
		return "ip6tables" + suffix
	}
	return "iptables" + suffix
}

// Restore implements Runner.
func (e Exec) Restore(f Family, table string, body []byte) error {
	ctx, cancel := e.ctx()
	defer cancel()
	var in bytes.Buffer
	fmt.Fprintf(&in, "*%s\n", table)
	in.Write(body)
	in.WriteString("COMMIT\n")
	cmd := exec.CommandContext(ctx, binary(f, "-restore"), "--noflush", "--wait")
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s into %s: %w: %s", binary(f, "-restore"), table, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Save implements Runner.
func (e Exec) Save(f Family, table string) ([]byte, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(f, "-save"), "-t", table)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t %s: %w: %s", binary(f, "-save"), table, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ruleSet is a parsed iptables-save table: chains and their rule lines
// ("-A CHAIN ..."), for presence checks.
type ruleSet struct {
	chains map[string]bool
	rules  map[string]bool
}

func parseSave(b []byte) ruleSet {
	rs := ruleSet{chains: map[string]bool{}, rules: map[string]bool{}}
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			name, _, _ := strings.Cut(l[1:], " ")
			rs.chains[name] = true
		case strings.HasPrefix(l, "-A "):
			rs.rules[l] = true
		}
	}
	return rs
}
