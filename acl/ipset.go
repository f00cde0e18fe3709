package acl

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// SetPrefix starts the name of every ipset zonenet owns. Nothing else on a
// host may use it: a cleanup destroys every set so named.
const SetPrefix = "zn-"

// IPSets lists and destroys the ipsets of the current network namespace.
type IPSets interface {
	// List returns the names of every set.
	List() ([]string, error)
	// Destroy removes one set; it fails while a rule or another set
	// still refers to it.
	Destroy(name string) error
}

// IPSetExec is IPSets over the ipset binary.
type IPSetExec struct {
	// Timeout bounds each exec; 0 means 30s.
	Timeout time.Duration
}

func (e IPSetExec) run(args ...string) ([]byte, error) {
	ctx, cancel := Exec{Timeout: e.Timeout}.ctx()
	defer cancel()
	cmd := exec.CommandContext(ctx, "ipset", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ipset %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// List implements IPSets. A host without the ipset tool has no set that
// zonenet could have made, so a missing binary lists none.
func (e IPSetExec) List() ([]string, error) {
	if _, err := exec.LookPath("ipset"); errors.Is(err, exec.ErrNotFound) {
		return nil, nil
	}
	out, err := e.run("list", "-n")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, l)
		}
	}
	return names, nil
}

// Destroy implements IPSets.
func (e IPSetExec) Destroy(name string) error {
	_, err := e.run("destroy", name)
	return err
}
