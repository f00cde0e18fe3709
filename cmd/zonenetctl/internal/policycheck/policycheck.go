// Package policycheck validates a policy document and prints what it
// allows, for `zonenetctl policy check`.
package policycheck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/zonenet/zonenet/conf"
)

// Result is a checked policy: Policy and Warnings when valid, Errors when not.
type Result struct {
	Policy   *conf.Policy
	Warnings []conf.Warning
	Errors   conf.PolicyErrors
}

// Check reads and validates the policy at path. zones are the network's
// (nil: the policy's own). The error is for files that cannot be read;
// an invalid policy is reported in Result.Errors.
func Check(path string, zones []conf.Zone) (Result, error) {
	_, r, err := Read(path, zones)
	return r, err
}

// Read is Check that also returns the bytes it checked, so that what a
// caller stores is exactly what was validated, whatever happens to the
// file afterwards.
func Read(path string, zones []conf.Zone) ([]byte, Result, error) {
	data, err := readLimited(path, conf.MaxPolicySize)
	if err != nil {
		return nil, Result{}, err
	}
	p, warns, err := conf.ParsePolicy(data, zones)
	if err != nil {
		var pe conf.PolicyErrors
		if !errors.As(err, &pe) {
			return nil, Result{}, err
		}
		return data, Result{Errors: pe}, nil
	}
	return data, Result{Policy: p, Warnings: warns}, nil
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// One byte over the limit lets the parser report the size.
	return io.ReadAll(io.LimitReader(f, max+1))
}

// ZonesFromFile reads the zones of the zonenet network configured in a
// conflist (or a single plugin configuration).
func ZonesFromFile(path string) ([]conf.Zone, error) {
	data, err := readLimited(path, conf.MaxConfigSize)
	if err != nil {
		return nil, err
	}
	z, err := ZonesFromConfList(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return z, nil
}

// ZonesFromConfList parses the zonenet entry of a conflist, or a single
// plugin configuration, with the plugin's own parser. The result is never
// nil, so an empty list still means "checked against a network".
func ZonesFromConfList(data []byte) ([]conf.Zone, error) {
	c, err := conf.FromConfList(data)
	if err != nil {
		return nil, err
	}
	if c.Zones == nil {
		return []conf.Zone{}, nil
	}
	return c.Zones, nil
}

// WriteProblems prints warnings and errors, one a line, for stderr.
func WriteProblems(w io.Writer, r Result) {
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %v\n", e)
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
}

// WriteReport prints the summary, the reachability table and the limits
// of a valid policy.
func WriteReport(w io.Writer, name string, r Result) error {
	p := r.Policy
	fmt.Fprintf(w, "%s: valid: %d zones, %d rules, %d warnings\n\n", name, len(p.Zones), len(p.Rules), len(r.Warnings))
	fmt.Fprintln(w, "New connections allowed (rows: source, columns: destination; replies always pass):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	t := p.Table()
	fmt.Fprintf(tw, "FROM \\ TO\t%s\n", strings.Join(t.Labels, "\t"))
	for i, l := range t.Labels {
		cells := make([]string, len(t.Labels))
		for j := range t.Labels {
			cells[j] = t.Cells[i][j].String()
		}
		fmt.Fprintf(tw, "%s\t%s\n", l, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "(allow: the default allows everything; -: neither side is a zone, the policy has no say)")
	fmt.Fprintln(w, "\nLimits per container:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ZONE\tSUBNETS\tINTRA-ZONE\tMAX CONNECTIONS\tBANDWIDTH\tNEW CONNECTIONS/MIN PER SOURCE")
	for _, z := range p.Zones {
		subs := make([]string, len(z.Subnets))
		for i, s := range z.Subnets {
			subs[i] = s.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", z.Name, strings.Join(subs, ","), z.IntraZone,
			orNone(z.Limits.MaxConnections > 0, fmt.Sprint(z.Limits.MaxConnections)),
			orNone(z.Limits.Bandwidth > 0, FormatBandwidth(z.Limits.Bandwidth)), rateText(z.Limits.RateLimit))
	}
	return tw.Flush()
}

func orNone(ok bool, s string) string {
	if ok {
		return s
	}
	return "none"
}

func rateText(r conf.RateLimit) string {
	switch {
	case r.NewConnectionsPerMinute == 0:
		return "none"
	case r.Action == conf.RateDrop:
		return fmt.Sprintf("%d, then drop for %s", r.NewConnectionsPerMinute, r.BlockFor)
	}
	return fmt.Sprintf("%d, then log", r.NewConnectionsPerMinute)
}

// FormatBandwidth writes bits per second the way a policy does (100Mbit).
func FormatBandwidth(bps uint64) string {
	for _, u := range []struct {
		name string
		mult uint64
	}{{"Tbit", 1e12}, {"Gbit", 1e9}, {"Mbit", 1e6}, {"kbit", 1e3}} {
		if bps >= u.mult && bps%u.mult == 0 {
			return fmt.Sprintf("%d%s", bps/u.mult, u.name)
		}
	}
	return fmt.Sprintf("%dbit", bps)
}
