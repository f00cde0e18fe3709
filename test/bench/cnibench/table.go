//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// figure is one row of the table. get returns NaN when the figure is
// missing or the phase had failures, so a broken run never shows a number.
type figure struct {
	name   string
	get    func(*result) float64
	target float64 // bound on target/base; 0 = none
	self   bool    // the ratio column and target compare within one plugin
}

func median(p phase) float64 { return quantile(p, 0.5) }
func p90(p phase) float64    { return quantile(p, 0.9) }

// quantile uses the nearest-rank definition.
func quantile(p phase, q float64) float64 {
	if p.Failures > 0 || len(p.Samples) == 0 {
		return math.NaN()
	}
	s := slices.Clone(p.Samples)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func wall(p phase) float64 {
	if p.Failures > 0 || p.Ops == 0 {
		return math.NaN()
	}
	return p.WallMs
}

func figures(pr params) []figure {
	return []figure{
		{name: "ADD median (ms)", get: func(r *result) float64 { return median(r.SeqAdd) }, target: 0.3},
		{name: "ADD p90 (ms)", get: func(r *result) float64 { return p90(r.SeqAdd) }},
		{name: "DEL median (ms)", get: func(r *result) float64 { return median(r.SeqDel) }, target: 0.3},
		{name: "DEL p90 (ms)", get: func(r *result) float64 { return p90(r.SeqDel) }},
		{name: fmt.Sprintf("%d parallel ADDs, wall (ms)", pr.Par), get: func(r *result) float64 { return wall(r.ParAdd) }, target: 0.4},
		{name: fmt.Sprintf("%d parallel DELs, wall (ms)", pr.Par), get: func(r *result) float64 { return wall(r.ParDel) }},
		{name: "ADD median @0 attached (ms)", get: func(r *result) float64 { return median(r.AddEmpty) }},
		{name: fmt.Sprintf("ADD median @%d attached (ms)", pr.Existing), get: func(r *result) float64 {
			if r.Fill.Failures > 0 {
				return math.NaN()
			}
			return median(r.AddLoaded)
		}},
		{name: fmt.Sprintf("ADD @%d / ADD @0", pr.Existing), get: func(r *result) float64 {
			if r.Fill.Failures > 0 {
				return math.NaN()
			}
			return median(r.AddLoaded) / median(r.AddEmpty)
		}, target: 1.2, self: true},
		{name: "exec floor: VERSION median (ms)", get: func(r *result) float64 { return median(r.Version) }},
	}
}

func readResult(path string) (*result, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r result
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &r, nil
}

func tableCmd(args []string) error {
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	basePath := fs.String("base", "", "result the ratios divide by")
	extra := fs.String("extra", "", "comma-separated results shown without ratios")
	targetPath := fs.String("target", "", "result the targets apply to")
	out := fs.String("out", "", "also write the table here")
	polPath := fs.String("policy", "", "result of zonenet run with a policy, compared in a second table")
	polName := fs.String("policy-name", "", "the policy's file, for the second table's title")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *basePath == "" || *targetPath == "" {
		return errors.New("table: -base and -target are required")
	}
	paths := []string{*basePath}
	if *extra != "" {
		paths = append(paths, strings.Split(*extra, ",")...)
	}
	paths = append(paths, *targetPath)
	cols := make([]*result, 0, len(paths))
	for _, p := range paths {
		r, err := readResult(p)
		if err != nil {
			r = &result{Label: strings.TrimSuffix(filepath.Base(p), ".json"), Fatal: err.Error()}
		}
		cols = append(cols, r)
	}
	text := renderTable(cols)
	if *polPath != "" {
		pol, err := readResult(*polPath)
		if err != nil {
			pol = &result{Label: strings.TrimSuffix(filepath.Base(*polPath), ".json"), Fatal: err.Error()}
		}
		text += renderPolicyTable(cols[0], cols[len(cols)-1], pol, *polName)
	}
	fmt.Print(text)
	if *out != "" {
		return os.WriteFile(*out, []byte(text), 0o644)
	}
	return nil
}

func renderTable(cols []*result) string {
	base, target := cols[0], cols[len(cols)-1]
	var pr params
	load := "?"
	for _, c := range cols {
		if c.Params.Ops > 0 {
			pr = c.Params
			load = c.LoadStart + " at start, " + c.LoadEnd + " at end"
			break
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CNI plugin benchmark  %s  %s/%s, %d CPUs, kernel %s\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), kernel())
	fmt.Fprintf(&b, "ops=%d sequential (ADD x%d then DEL x%d), par=%d, pairs=%d at 0 and at %d attachments; every op is one exec, fork to exit\n",
		pr.Ops, pr.Ops, pr.Ops, pr.Par, pr.Pairs, pr.Existing)
	fmt.Fprintf(&b, "sequential ops interleave the plugins op by op; parallel and @0/@N steps run per plugin back to back\nload average %s\n\n", load)

	writeGrid(&b, cols, figures(pr))
	fmt.Fprintf(&b, "\ntargets apply to %s; ratios divide %s by %s; %q = missing or a step failed\n",
		target.Label, target.Label, base.Label, "-")
	return b.String()
}

// renderPolicyTable compares zonenet with a policy installed against the
// same reference, on the same figures, with the policy's own targets.
func renderPolicyTable(base, plain, pol *result, name string) string {
	pr := pol.Params
	if pr.Ops == 0 {
		pr = plain.Params
	}
	var figs []figure
	for _, f := range figures(pr) {
		switch f.name {
		case "ADD median (ms)", "DEL median (ms)":
			f.target = policyTarget
		default:
			f.target = 0
		}
		figs = append(figs, f)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nwith a policy: %s runs zonenet with %s (installed with its zones on the first ADD; anti-spoofing entries per container)\n\n", pol.Label, name)
	writeGrid(&b, []*result{base, plain, pol}, figs)
	fmt.Fprintf(&b, "\ntargets apply to %s; ratios divide %s by %s\n", pol.Label, pol.Label, base.Label)
	return b.String()
}

// policyTarget bounds ADD and DEL medians of zonenet with a policy against
// the reference without one.
const policyTarget = 0.5

// writeGrid writes one row per figure with a column per result, the ratio
// of the last column to the first, and the failures and errors of each.
func writeGrid(b *strings.Builder, cols []*result, figs []figure) {
	base, target := cols[0], cols[len(cols)-1]
	ratioHead := fmt.Sprintf("%s/%s", short(target.Label), short(base.Label))
	nameW := 34
	w := 13
	rw := max(len(ratioHead)+2, 10)
	fmt.Fprintf(b, "%-*s", nameW, "figure")
	for _, c := range cols {
		fmt.Fprintf(b, "%*s", w, c.Label)
	}
	fmt.Fprintf(b, "%*s%10s%8s\n", rw, ratioHead, "target", "")
	fmt.Fprintln(b, strings.Repeat("-", nameW+w*len(cols)+rw+18))

	for _, f := range figs {
		fmt.Fprintf(b, "%-*s", nameW, f.name)
		prec := 1
		if f.self {
			prec = 2
		}
		for _, c := range cols {
			fmt.Fprintf(b, "%*s", w, fmtNum(value(c, f.get), prec))
		}
		var ratio float64
		if f.self {
			ratio = value(target, f.get)
			fmt.Fprintf(b, "%*s", rw, "(per plugin)")
		} else {
			ratio = value(target, f.get) / value(base, f.get)
			fmt.Fprintf(b, "%*s", rw, fmtNum(ratio, 2))
		}
		if f.target > 0 {
			verdict := "FAIL"
			if math.IsNaN(ratio) {
				verdict = "n/a"
			} else if ratio <= f.target {
				verdict = "ok"
			}
			fmt.Fprintf(b, "%10s%8s", fmt.Sprintf("<= %.1fx", f.target), verdict)
		}
		fmt.Fprintln(b)
	}

	fmt.Fprintf(b, "%-*s", nameW, "failed ops (all steps)")
	for _, c := range cols {
		fmt.Fprintf(b, "%*s", w, failures(c))
	}
	fmt.Fprintln(b)

	var notes []string
	for _, c := range cols {
		if c.Fatal != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", c.Label, c.Fatal))
		}
		for _, ph := range c.phases() {
			if ph.p.FirstError != "" {
				notes = append(notes, fmt.Sprintf("%s %s: %d/%d failed, first: %s", c.Label, ph.name, ph.p.Failures, ph.p.Ops, ph.p.FirstError))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(b, "\nerrors:")
		for _, n := range notes {
			fmt.Fprintln(b, "  "+strings.ReplaceAll(n, "\n", "\n    "))
		}
	}
}

type namedPhase struct {
	name string
	p    phase
}

func (r *result) phases() []namedPhase {
	return []namedPhase{
		{"VERSION", r.Version}, {"seq ADD", r.SeqAdd}, {"seq DEL", r.SeqDel},
		{"parallel ADD", r.ParAdd}, {"parallel DEL", r.ParDel},
		{"ADD@0", r.AddEmpty}, {"DEL@0", r.DelEmpty}, {"fill", r.Fill},
		{"ADD@N", r.AddLoaded}, {"DEL@N", r.DelLoaded}, {"drain", r.Drain},
	}
}

func failures(r *result) string {
	if r.Fatal != "" {
		return "fatal"
	}
	n, ops := 0, 0
	for _, ph := range r.phases() {
		n += ph.p.Failures
		ops += ph.p.Ops
	}
	return fmt.Sprintf("%d/%d", n, ops)
}

func value(r *result, get func(*result) float64) float64 {
	if r.Fatal != "" {
		return math.NaN()
	}
	return get(r)
}

func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func short(label string) string {
	if i := strings.IndexAny(label, " ("); i > 0 {
		return label[:i]
	}
	return label
}

func kernel() string {
	raw, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(raw))
}
