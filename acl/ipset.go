package acl

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// SetPrefix starts the name of every ipset zonenet owns. Nothing else on a
// host may use it: a cleanup destroys every set so named.
const SetPrefix = "zn-"

// Sets creates, fills, swaps and destroys ipsets, in the text language of
// `ipset restore` as Runner speaks iptables-restore's. Exec implements it
// with the ipset binary; acltest.Fake with a map. A Runner that does not
// implement it (or an Exec on a node without ipset) gets plain rules.
//
// The binary rather than netlink: one exec carries the whole batch (a
// 10,000 address list is one process, not 10,000 netlink requests each on
// a fresh socket as netlink's package-level Ipset* functions do), and
// `ipset list -n` names the sets without dumping every member of every set
// in the namespace, which netlink's IpsetListAll does.
type Sets interface {
	// ListSets returns the names of every set of the namespace.
	ListSets() ([]string, error)
	// RestoreSets runs a batch of create, add, swap and destroy lines in
	// order, stopping at the first that fails: not all or nothing.
	RestoreSets(batch []byte) error
}

// setsOf is r's set implementation, or nil when it has none usable.
func setsOf(r Runner) Sets {
	s, ok := r.(Sets)
	if !ok {
		return nil
	}
	if a, ok := s.(interface{ setsAvailable() bool }); ok && !a.setsAvailable() {
		return nil
	}
	return s
}

// setsAvailable reports whether the ipset binary is installed: without it
// large policies still work, as plain rules.
func (e Exec) setsAvailable() bool {
	_, err := exec.LookPath("ipset")
	return err == nil
}

// ListSets implements Sets. A host without the ipset tool has no set
// zonenet could have made, so a missing binary lists none.
func (e Exec) ListSets() ([]string, error) {
	if !e.setsAvailable() {
		return nil, nil
	}
	ctx, cancel := e.ctx()
	defer cancel()
	cmd := exec.CommandContext(ctx, "ipset", "list", "-n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ipset list -n: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.Fields(string(out)), nil
}

// RestoreSets implements Sets.
func (e Exec) RestoreSets(batch []byte) error {
	ctx, cancel := e.ctx()
	defer cancel()
	cmd := exec.CommandContext(ctx, "ipset", "restore")
	cmd.Stdin = bytes.NewReader(batch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ipset restore: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// writeSet renders the creation of a set under name with st's members.
func writeSet(b *bytes.Buffer, name string, st ipSet) {
	fam := "inet"
	if st.family == IPv6 {
		fam = "inet6"
	}
	// Sized for the list, so filling it does not rehash on the way; the
	// kernel grows a set beyond its hashsize by itself, not beyond maxelem.
	hashsize := 1024
	for hashsize < len(st.members)/2 {
		hashsize *= 2
	}
	fmt.Fprintf(b, "create %s hash:net family %s hashsize %d maxelem %d\n", name, fam, hashsize, max(65536, len(st.members)))
	for _, m := range st.members {
		fmt.Fprintf(b, "add %s %s\n", name, m)
	}
}
