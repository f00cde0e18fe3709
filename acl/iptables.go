// Package acl owns zonenet's iptables state: fixed top-level chains jumped
// to once from the built-in chains, per-zone and per-container chains under
// them, every rule commented with its owner. Bulk changes are rendered
// deterministically and applied with one `iptables-restore --noflush` so a
// change is one netfilter commit, not one exec per rule.
package acl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/zonenet/zonenet/internal/flock"
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
	// RestoreTables applies the bodies of several tables of one family
	// with a single exec, so a change spanning tables costs one restore.
	RestoreTables(f Family, tables []Table) error
	// Save returns the rules of one table in iptables-save format.
	Save(f Family, table string) ([]byte, error)
	// Lock serialises read-modify-write sequences (a save, then a
	// restore that depends on it) across processes.
	Lock() (unlock func(), err error)
}

// Exec is the Runner over the iptables binaries.
type Exec struct {
	// Timeout bounds each exec and the wait for the lock; 0 means 30s.
	Timeout time.Duration
	// LockPath is the file locked by Lock; "" means DefaultLockPath.
	LockPath string
}

// DefaultLockPath is shared by every zonenet process on the host, whatever
// its network or data directory: they all edit the same top-level chains.
// It is not xtables.lock, which iptables-restore --wait takes itself.
const DefaultLockPath = "/run/zonenet/iptables.lock"

// Lock implements Runner with an flock on LockPath.
func (e Exec) Lock() (func(), error) {
	path := e.LockPath
	if path == "" {
		path = DefaultLockPath
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("iptables lock: %w", err)
	}
	t := e.Timeout
	if t == 0 {
		t = 30 * time.Second
	}
	l, err := flock.Acquire(path, t)
	if errors.Is(err, flock.ErrTimeout) {
		return nil, fmt.Errorf("iptables lock %s: held by another process for more than %s: %w", path, t, ErrLockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("iptables lock: %w", err)
	}
	return l.Unlock, nil
}

// ErrLockTimeout: another zonenet process held the iptables lock for
// longer than the timeout; trying again later is the remedy.
var ErrLockTimeout = errors.New("iptables lock timeout")

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

// Table is one table's part of a RestoreTables call.
type Table struct {
	Name string
	Body []byte
}

// RestoreTables implements Runner.
func (e Exec) RestoreTables(f Family, tables []Table) error {
	ctx, cancel := e.ctx()
	defer cancel()
	var in bytes.Buffer
	var names []string
	for _, t := range tables {
		fmt.Fprintf(&in, "*%s\n", t.Name)
		in.Write(t.Body)
		in.WriteString("COMMIT\n")
		names = append(names, t.Name)
	}
	cmd := exec.CommandContext(ctx, binary(f, "-restore"), "--noflush", "--wait")
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s into %s: %w: %s", binary(f, "-restore"), strings.Join(names, ","), err, strings.TrimSpace(stderr.String()))
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

// locked runs fn while holding r's lock.
func locked(r Runner, fn func() error) error {
	unlock, err := r.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}
