package acl

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// Top-level chains: constants that never change.
const (
	ChainPostrouting = "ZONENET-POSTROUTING"
	ChainHostports   = "ZONENET-HOSTPORTS"
)

// ownerChain names a per-owner chain: a fixed prefix and a hash of the
// owner's fields, separated so ("a","bc") and ("ab","c") differ.
func ownerChain(prefix string, fields ...string) string {
	h := sha256.Sum256([]byte(strings.Join(fields, "\x00")))
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:])
	return prefix + enc[:16] // ≤ 28 chars with prefixes of ≤ 12
}

// comment quotes an owner comment for iptables-restore input.
func comment(s string) string {
	s = strings.NewReplacer(`"`, "'", "\n", " ", "\\", "/").Replace(s)
	if len(s) > 250 {
		s = s[:250]
	}
	return `-m comment --comment "` + s + `"`
}
