//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Targets, from the ACL work's goals.
const (
	installTarget      = 1.0 / 20 // ours / per-rule at installTargetRules
	installTargetRules = 10000
	packetTarget       = 0.90 // loaded / unloaded, throughput and connection rate
)

func tableCmd(args []string) error {
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	in := fs.String("in", "", "results file (JSON lines)")
	out := fs.String("out", "", "also write the table here")
	ipt := fs.String("iptables", "?", "iptables version, for the header")
	load := fs.String("load", "?", "load average at start and end, for the header")
	setup := fs.String("setup", "", "one line on how the per-packet step ran, for the header")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("table: -in is required")
	}
	recs, err := readRecords(*in)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ACL benchmark  %s  %s/%s, %d CPUs, kernel %s, iptables %s\nload average %s\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), kernel(), *ipt, *load)
	installTable(&b, recs)
	packetTable(&b, recs, *setup)
	fmt.Print(b.String())
	if *out != "" {
		return os.WriteFile(*out, []byte(b.String()), 0o644)
	}
	return nil
}

func readRecords(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func installTable(b *strings.Builder, recs []record) {
	var counts []int
	shape := ""
	for _, r := range recs {
		if r.Kind == "install" && !slices.Contains(counts, r.Rules) {
			counts = append(counts, r.Rules)
			shape = r.Shape
		}
	}
	slices.Sort(counts)
	fmt.Fprintf(b, "\n1. Rule install, each into a fresh host namespace (filler shape %q)\n", shape)
	fmt.Fprintln(b, "   ours = `zonenetctl policy apply`, one exec (median of the runs; parse = its parse+validate share, timed in process)")
	fmt.Fprintln(b, "   per-rule = one `iptables -A` exec per rule into a scratch chain")
	fmt.Fprintf(b, "%8s %12s %12s %14s %14s %14s\n", "rules", "ours (s)", "parse (s)", "per-rule (s)", "ours/per-rule", "target")
	fmt.Fprintln(b, strings.Repeat("-", 88))
	if len(counts) == 0 {
		fmt.Fprintln(b, "   (no install results: see the errors above)")
	}
	for _, n := range counts {
		var ours, parse, per []float64
		for _, r := range recs {
			if r.Kind != "install" || r.Rules != n {
				continue
			}
			switch r.Method {
			case "ours":
				ours = append(ours, r.Seconds)
				parse = append(parse, r.ParseSeconds)
			case "per-rule":
				per = append(per, r.Seconds)
			}
		}
		ratio := median(ours) / median(per)
		fmt.Fprintf(b, "%8d %12s %12s %14s %14s", n, num(median(ours), 3), num(median(parse), 3), num(median(per), 2), num(ratio, 3))
		if n == installTargetRules {
			fmt.Fprintf(b, " %14s %8s", fmt.Sprintf("< 1/%.0f", 1/installTarget), verdict(ratio, installTarget, false))
		}
		fmt.Fprintln(b)
	}
}

func packetTable(b *strings.Builder, recs []record, setup string) {
	loaded := 0
	for _, r := range recs {
		if (r.Kind == "stream" || r.Kind == "connect") && r.Rules > 0 {
			loaded = r.Rules
		}
	}
	fmt.Fprintf(b, "\n2. Per-packet cost, frontend -> backend container through the host namespace\n")
	if setup != "" {
		fmt.Fprintf(b, "   %s\n", setup)
	}
	fmt.Fprintf(b, "   policy with the measured rule only vs the same with %d filler rules before it (median of rounds)\n", loaded)
	head0 := "0 filler"
	headN := fmt.Sprintf("%d filler", loaded)
	fmt.Fprintf(b, "%-28s %12s %14s %8s %10s %8s   %s\n", "figure", head0, headN, "ratio", "target", "", "rounds (0 | N)")
	fmt.Fprintln(b, strings.Repeat("-", 110))
	rows := []struct {
		name string
		kind string
		get  func(record) float64
	}{
		{"TCP throughput (Mbit/s)", "stream", func(r record) float64 { return r.Mbps }},
		{"new connections per second", "connect", func(r record) float64 { return r.PerSec }},
	}
	conns, hits := 0, 0
	for _, row := range rows {
		var base, load []float64
		for _, r := range recs {
			if r.Kind != row.kind {
				continue
			}
			if r.Kind == "connect" {
				conns += r.Conns
				hits += r.Hits
			}
			if r.Rules == 0 {
				base = append(base, row.get(r))
			} else {
				load = append(load, row.get(r))
			}
		}
		ratio := median(load) / median(base)
		fmt.Fprintf(b, "%-28s %12s %14s %8s %10s %8s   %s | %s\n", row.name, num(median(base), 0), num(median(load), 0),
			num(ratio, 2), fmt.Sprintf(">= %.2f", packetTarget), verdict(ratio, packetTarget, true), list(base), list(load))
	}
	if conns > 0 {
		fmt.Fprintf(b, "   %d connections measured; the measured rule accepted %d packets during them (>= one SYN each: no shortcut)\n", conns, hits)
	}
}

func verdict(ratio, target float64, atLeast bool) string {
	switch {
	case math.IsNaN(ratio) || math.IsInf(ratio, 0):
		return "n/a"
	case atLeast && ratio >= target, !atLeast && ratio < target:
		return "ok"
	}
	return "FAIL"
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func num(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func list(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, " ")
}

func kernel() string {
	raw, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(raw))
}
