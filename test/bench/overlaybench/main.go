//go:build linux

// Command overlaybench measures container-to-container TCP throughput and
// round-trip time between two simulated nodes over four paths: a raw veth
// pair (the floor), the underlay routed without encapsulation, a VXLAN
// overlay built by hand with iproute2, and the same overlay programmed by
// the overlay package. Every path lives in network namespaces this command
// creates (named znob-TAG-*) and removes; it is started by
// test/bench/overlay-bench.sh.
//
//	overlaybench -tag T [-rounds 3] [-duration 3s] [-pings 2000] [-out FILE]
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

type sample struct{ gbps, perCPU, p50, p99 float64 }

// pair is one round's zonenet / hand-built ratios.
type pair sample

func main() {
	tag := flag.String("tag", fmt.Sprint(os.Getpid()), "names the namespaces: znob-TAG-*")
	rounds := flag.Int("rounds", 3, "measurements of every path, interleaved; the table shows the median")
	dur := flag.Duration("duration", 3*time.Second, "bulk send time per measurement")
	pings := flag.Int("pings", 2000, "one-byte round trips per measurement")
	outFile := flag.String("out", "", "also write the table to this file")
	verbose := flag.Bool("v", false, "log each measurement and the VXLAN devices")
	flag.Parse()
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "overlaybench: "+f+"\n", a...) }
	if err := run(*tag, *rounds, *dur, *pings, *outFile, *verbose, logf); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

func run(tag string, rounds int, dur time.Duration, pings int, outFile string, verbose bool, logf func(string, ...any)) error {
	b := &builder{tag: tag, log: logf}
	defer b.cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		b.cleanup()
		os.Exit(130)
	}()

	var setups []setup
	for _, build := range []func() (setup, error){b.buildVeth, b.buildRouted, b.buildHand, b.buildZonenet} {
		s, err := build()
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		srv, err := serve(s.server, s.dst)
		if err != nil {
			return fmt.Errorf("%s: serve: %w", s.name, err)
		}
		defer srv.close()
		if err := check(s); err != nil {
			return err
		}
		if verbose && s.note != "" {
			logf("%s: %s", s.name, s.note)
		}
		setups = append(setups, s)
	}

	results := map[string][]sample{}
	var pairs []pair
	for r := 0; r < rounds; r++ {
		// The two VXLAN paths back to back, their order alternating, so
		// each round gives a ratio taken under the same machine load;
		// the other paths before them, their order alternating too.
		order := []int{0, 1, 2, 3}
		if r%2 == 1 {
			order = []int{1, 0, 3, 2}
		}
		got := map[string]sample{}
		for _, i := range order {
			s := setups[i]
			gbps, perCPU, err := bulk(s.client, s.dst, dur)
			if err != nil {
				return fmt.Errorf("%s: bulk: %w", s.name, err)
			}
			rt, err := rtts(s.client, s.dst, pings)
			if err != nil {
				return fmt.Errorf("%s: rtt: %w", s.name, err)
			}
			x := sample{gbps: gbps, perCPU: perCPU, p50: quantile(rt, 0.5), p99: quantile(rt, 0.99)}
			got[s.name] = x
			results[s.name] = append(results[s.name], x)
			if verbose {
				logf("round %d %-26s %6.2f Gbit/s %6.2f Gbit/CPU-s  rtt p50 %6.1f µs  p99 %7.1f µs", r+1, s.name, x.gbps, x.perCPU, x.p50, x.p99)
			}
		}
		h, z := got[pathHand], got[pathZonenet]
		pairs = append(pairs, pair{gbps: z.gbps / h.gbps, perCPU: z.perCPU / h.perCPU, p50: z.p50 / h.p50, p99: z.p99 / h.p99})
	}

	var out strings.Builder
	table(&out, setups, results, pairs, dur, pings)
	fmt.Print(out.String())
	if outFile != "" {
		return os.WriteFile(outFile, []byte(out.String()), 0o644)
	}
	return nil
}

func med[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return math.NaN()
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func spread[T any](xs []T, f func(T) float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		lo, hi = math.Min(lo, f(x)), math.Max(hi, f(x))
	}
	return lo, hi
}

func table(w io.Writer, setups []setup, res map[string][]sample, pairs []pair, dur time.Duration, pings int) {
	fmt.Fprintf(w, "container -> container, two simulated nodes; median of %d rounds of %s bulk TCP + %d one-byte round trips\n\n",
		len(pairs), dur, pings)
	line := strings.Repeat("-", 80)
	fmt.Fprintf(w, "%-27s %10s %12s %13s %13s\n", "path", "Gbit/s", "Gbit/CPU-s", "RTT p50 µs", "RTT p99 µs")
	fmt.Fprintln(w, line)
	gbps := func(x sample) float64 { return x.gbps }
	perCPU := func(x sample) float64 { return x.perCPU }
	p50 := func(x sample) float64 { return x.p50 }
	p99 := func(x sample) float64 { return x.p99 }
	for _, s := range setups {
		r := res[s.name]
		fmt.Fprintf(w, "%-27s %10.2f %12.2f %13.1f %13.1f\n", s.name, med(r, gbps), med(r, perCPU), med(r, p50), med(r, p99))
	}
	fmt.Fprintln(w, line)
	pg := func(x pair) float64 { return x.gbps }
	pc := func(x pair) float64 { return x.perCPU }
	p5 := func(x pair) float64 { return x.p50 }
	p9 := func(x pair) float64 { return x.p99 }
	fmt.Fprintf(w, "%-27s %10.3f %12.3f %13.3f %13.3f\n", "zonenet / hand-built", med(pairs, pg), med(pairs, pc), med(pairs, p5), med(pairs, p9))
	glo, ghi := spread(pairs, pg)
	clo, chi := spread(pairs, pc)
	fmt.Fprintf(w, "%-27s %10s %12s\n", "  per-round range",
		fmt.Sprintf("%.2f-%.2f", glo, ghi), fmt.Sprintf("%.2f-%.2f", clo, chi))
	fmt.Fprintln(w)
	thr := med(pairs, pg)
	verdict := "meets"
	if thr < 0.95 {
		verdict = "MISSES"
	}
	fmt.Fprintf(w, "throughput ratio (median of per-round ratios) %.3f %s the target >= 0.95\n", thr, verdict)
	fmt.Fprintln(w, "RTT ratios: lower is better, 1.0 = the same; Gbit/CPU-s moves less than Gbit/s on a busy machine")
	fmt.Fprintf(w, "zonenet VXLAN vs routed without encapsulation: throughput x%.2f, RTT p50 x%.2f\n",
		med(res[pathZonenet], gbps)/med(res[pathRouted], gbps), med(res[pathZonenet], p50)/med(res[pathRouted], p50))
}
