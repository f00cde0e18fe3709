package cluster

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultPrefix is where a cluster keeps its keys when Config.Prefix is
// empty.
const DefaultPrefix = "/zonenet/"

// Sections of the key space, under the prefix. See doc.go.
const (
	secNodes   = "nodes/"
	secGone    = "gone/"
	secSubnets = "subnets/"
	secBlocks  = "blocks/"
	secPolicy  = "policy/"
)

type keyKind int

const (
	kindNode keyKind = iota + 1
	kindGone
	kindSubnet
	kindBlock
	kindPolicy
)

// keys builds and parses the keys of one cluster prefix.
type keys struct{ prefix string }

func (k keys) nodes() string           { return k.prefix + secNodes }
func (k keys) node(name string) string { return k.nodes() + name }
func (k keys) gones() string           { return k.prefix + secGone }
func (k keys) gone(name string) string { return k.gones() + name }

func (k keys) subnets(network string) string { return k.prefix + secSubnets + network + "/" }
func (k keys) subnet(network string, p netip.Prefix) string {
	return k.subnets(network) + p.String()
}

func (k keys) allBlocks() string            { return k.prefix + secBlocks }
func (k keys) blocks(network string) string { return k.allBlocks() + network + "/" }
func (k keys) block(network string, p netip.Prefix) string {
	return k.blocks(network) + p.String()
}

func (k keys) policies() string             { return k.prefix + secPolicy }
func (k keys) policy(network string) string { return k.policies() + network }

// parsedKey is what a key names: a node (name), a network's policy
// (network), or a network's subnet or block (network, prefix).
type parsedKey struct {
	kind    keyKind
	name    string // node name, or network name
	network string
	prefix  netip.Prefix
}

// parse reads a key of this cluster. Keys that this version did not write
// (or that someone damaged) are reported as not ok and left alone.
func (k keys) parse(key string) (parsedKey, bool) {
	rest, ok := strings.CutPrefix(key, k.prefix)
	if !ok {
		return parsedKey{}, false
	}
	if name, ok := strings.CutPrefix(rest, secNodes); ok {
		return parsedKey{kind: kindNode, name: name}, checkName(name) == nil
	}
	if name, ok := strings.CutPrefix(rest, secGone); ok {
		return parsedKey{kind: kindGone, name: name}, checkName(name) == nil
	}
	if network, ok := strings.CutPrefix(rest, secPolicy); ok {
		return parsedKey{kind: kindPolicy, network: network}, checkName(network) == nil
	}
	for _, s := range []struct {
		sec  string
		kind keyKind
	}{{secSubnets, kindSubnet}, {secBlocks, kindBlock}} {
		if r, ok := strings.CutPrefix(rest, s.sec); ok {
			network, pfx, ok := strings.Cut(r, "/")
			if !ok || checkName(network) != nil {
				return parsedKey{}, false
			}
			p, err := netip.ParsePrefix(pfx)
			// Only the canonical spelling is a key we wrote: two spellings
			// of one block must never be two keys.
			if err != nil || p != p.Masked() || p.String() != pfx || p.Addr().Is4In6() {
				return parsedKey{}, false
			}
			return parsedKey{kind: s.kind, network: network, prefix: p}, true
		}
	}
	return parsedKey{}, false
}

// checkName accepts a node, network or zone name that is safe as one key
// segment: 1-253 letters, digits, '.', '-' or '_' (host names and CNI
// network names fit), never "." or "..".
func checkName(s string) error {
	if s == "" || len(s) > 253 || s == "." || s == ".." {
		return fmt.Errorf("name %q: must be 1-253 letters, digits, '.', '-' or '_'", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("name %q: character %q is not allowed (letters, digits, '.', '-', '_')", s, c)
		}
	}
	return nil
}

// normPrefix checks the prefix used as a key configuration: valid, its
// canonical masked form, and not an IPv4-mapped IPv6 prefix (which would
// give an IPv4 network two spellings).
func normPrefix(what string, p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("%s: invalid prefix", what)
	case p != p.Masked():
		return fmt.Errorf("%s %s: host bits set (want %s)", what, p, p.Masked())
	case p.Addr().Is4In6():
		return fmt.Errorf("%s %s: IPv4-mapped IPv6 prefix, use the IPv4 form", what, p)
	case p.Addr().Zone() != "":
		return fmt.Errorf("%s %s: has a zone", what, p)
	}
	return nil
}
