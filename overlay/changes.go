package overlay

import (
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
)

// Op is what a change did to a kernel object.
type Op string

// The operations.
const (
	Add Op = "add"
	Del Op = "del"
	Set Op = "set" // replaced or modified in place
)

// Kind is the kind of kernel object a change touched.
type Kind string

// The kinds of object the overlay owns.
const (
	KindLink    Kind = "link"
	KindFDB     Kind = "fdb"
	KindNeigh   Kind = "neigh"
	KindRoute   Kind = "route"
	KindPeerSet Kind = "ipset"
)

// Change is one netlink write that succeeded.
type Change struct {
	Op   Op
	Kind Kind
	Key  string // the object, as `ip` or `bridge` would print it
}

func (c Change) String() string { return fmt.Sprintf("%s %s %s", c.Op, c.Kind, c.Key) }

// Changes are the writes one call made, in the order it made them. Every
// write goes through one place (writer.do), so an empty Changes means the
// call wrote nothing to the kernel.
type Changes []Change

// Count returns how many changes have that op and kind.
func (cs Changes) Count(op Op, kind Kind) int {
	n := 0
	for _, c := range cs {
		if c.Op == op && c.Kind == kind {
			n++
		}
	}
	return n
}

func (cs Changes) String() string {
	if len(cs) == 0 {
		return "no changes"
	}
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, "; ")
}

// writer makes the netlink writes of one call and records those that
// succeeded.
type writer struct {
	h       *netlink.Handle
	changes Changes
}

func (w *writer) do(op Op, kind Kind, key string, fn func() error) error {
	if err := fn(); err != nil {
		return fmt.Errorf("overlay: %s %s %s: %w", op, kind, key, err)
	}
	w.changes = append(w.changes, Change{Op: op, Kind: kind, Key: key})
	return nil
}
