// Package status renders the attachments recorded in a zonenet store.
package status

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zonenet/zonenet/ipam"
)

// DBName is the store file inside a data directory.
const DBName = "zonenet.db"

// LockTimeout is how long status waits for a plugin exec holding the store:
// short, because an operator's command must not stall the node's CNI calls
// nor hang itself.
const LockTimeout = time.Second

// ErrNoStore means the data directory holds no store.
var ErrNoStore = errors.New("no zonenet store")

// networkLister is the store method that enumerates networks. Status uses
// it when the store provides it; otherwise a network name must be given.
type networkLister interface {
	Networks() ([]string, error)
}

// Load reads the attachments of network (of every network when empty and
// the store can enumerate them) from the store under dataDir. It never
// creates a store.
func Load(dataDir, network string) ([]ipam.Attachment, error) {
	db := filepath.Join(dataDir, DBName)
	if _, err := os.Stat(db); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s", ErrNoStore, db)
		}
		return nil, err
	}
	st, err := ipam.Open(db, LockTimeout)
	if err != nil {
		return nil, err
	}
	defer st.Close()

	networks := []string{network}
	if network == "" {
		nl, ok := any(st).(networkLister)
		if !ok {
			return nil, errors.New("this store cannot list its networks: pass --network NAME")
		}
		if networks, err = nl.Networks(); err != nil {
			return nil, err
		}
		slices.Sort(networks)
	}
	var out []ipam.Attachment
	for _, n := range networks {
		atts, err := st.List(n)
		if err != nil {
			return nil, err
		}
		out = append(out, atts...)
	}
	return out, nil
}

// Write prints one line per attachment, or "no attachments".
func Write(w io.Writer, atts []ipam.Attachment, now time.Time) error {
	if len(atts) == 0 {
		_, err := fmt.Fprintln(w, "no attachments")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NETWORK\tCONTAINER\tIFNAME\tZONE\tMODE\tIPS\tMAC\tHOST VETH\tAGE")
	for _, a := range atts {
		ips := make([]string, 0, len(a.IPs))
		for _, p := range a.IPs {
			ips = append(ips, p.String())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(a.Network), cell(ShortID(a.ContainerID)), cell(a.IfName), cell(a.Zone), cell(a.Mode),
			cell(strings.Join(ips, ",")), cell(a.MAC), cell(a.HostVeth), Age(a.Created, now))
	}
	return tw.Flush()
}

// ShortID shortens a container ID to 12 characters, as docker ps does.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Age renders how long ago t was in one unit: 45s, 12m, 3h, 5d. Unknown or
// future times render as "-".
func Age(t, now time.Time) string {
	if t.IsZero() || t.After(now) {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// cell keeps a table cell on one line and never empty: values come from
// the runtime and may hold anything.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}
