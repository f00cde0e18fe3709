//go:build linux

// Command clusterbench measures how fast zonenetd follows the cluster,
// with real parts: etcd with mutual TLS in an underlay namespace, and per
// node a namespace plugged into it running the real zonenetd.
//
//   - Three real nodes: from the third node's zonenetd start until both
//     peers have programmed it (FDB entry, neighbour, route to its block,
//     peer-set member, read from their kernels), and from its death
//     (zonenetd SIGKILLed, namespace deleted) until both have dropped it.
//   - Fifty nodes: one real node and 49 fake registrations written into
//     etcd with the cluster package: until the real node has programmed
//     all 49 (written at once while it runs, and again from a cold start),
//     until it drops one whose lease is revoked and one that stops
//     renewing it, and zonenetd's memory at that size.
//
// Everything is made under names zncb-TAG-* and removed at the end;
// processes are ended by their PID. Started by test/bench/cluster-bench.sh.
//
//	clusterbench -zonenetd BIN [-ttl 5s] [-peers 50] [-rounds 3] [-tag T] [-out FILE]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/overlay"
)

func main() { os.Exit(mainRC()) }

// mainRC is main with deferred calls that run: 0 when every figure met
// its target, 3 when one missed, 1 on an error, 2 on a bad flag.
func mainRC() int {
	if len(os.Args) > 1 && os.Args[1] == "fake" {
		return fakeMain(os.Args[2:])
	}
	tag := flag.String("tag", strconv.Itoa(os.Getpid()), "names the namespaces: zncb-TAG-*")
	zonenetd := flag.String("zonenetd", "", "the zonenetd binary (required)")
	ttl := flag.Duration("ttl", 5*time.Second, "the nodes' --node-ttl")
	peers := flag.Int("peers", 50, "nodes of the second part: one real, the rest fake")
	rounds := flag.Int("rounds", 3, "joins and deaths of the third node; times are the median")
	outFile := flag.String("out", "", "also write the table to this file")
	flag.Parse()
	logf := func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "clusterbench %s: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(f, a...))
	}
	switch {
	case *zonenetd == "":
		logf("-zonenetd is required")
		return 2
	case *ttl < 2*time.Second || *ttl%time.Second != 0:
		logf("-ttl %s: want whole seconds, at least 2 (etcd's lease granularity)", *ttl)
		return 2
	case *peers < 3 || *peers > 250:
		logf("-peers %d: want 3 to 250", *peers)
		return 2
	case *rounds < 1:
		logf("-rounds %d: want at least 1", *rounds)
		return 2
	}
	dir, err := os.MkdirTemp("", "clusterbench-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer os.RemoveAll(dir)
	b, err := newBed(*tag, dir, logf)
	if b != nil {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			<-sig
			b.cleanup()
			os.RemoveAll(dir)
			os.Exit(130)
		}()
		defer b.cleanup()
	}
	if err == nil {
		err = b.startEtcd()
	}
	if err != nil {
		logf("%v", err)
		return 1
	}
	r := &run{b: b, zonenetd: *zonenetd, ttl: *ttl, log: logf}
	three, err := r.threeNodes(*rounds)
	if err != nil {
		logf("three nodes: %v", err)
		return 1
	}
	many, err := r.manyPeers(*peers)
	if err != nil {
		logf("%d nodes: %v", *peers, err)
		return 1
	}
	var out strings.Builder
	failed := table(&out, three, many, *ttl, *rounds, *peers)
	fmt.Print(out.String())
	if *outFile != "" {
		if err := os.WriteFile(*outFile, []byte(out.String()), 0o644); err != nil {
			logf("%v", err)
			return 1
		}
	}
	if failed {
		return 3
	}
	return 0
}

// run is one measurement over a bed.
type run struct {
	b        *bed
	zonenetd string
	ttl      time.Duration
	log      func(string, ...any)
}

// watch is one node's kernel, and what must hold in it.
type watch struct {
	n    *node
	want func(st overlay.State) string // "" when it holds, else what is missing
}

// converge polls every watched kernel until what it wants holds, and
// returns for each the time since t0 at which it was first seen to hold.
// A snapshot costs a few milliseconds at 50 peers, which bounds the
// resolution together with the 5 ms pause.
func converge(t0 time.Time, timeout time.Duration, ws ...watch) ([]time.Duration, error) {
	got := make([]time.Duration, len(ws))
	left := len(ws)
	last := make([]string, len(ws))
	for {
		for i, w := range ws {
			if got[i] != 0 {
				continue
			}
			st, err := w.n.snapshot()
			miss := "unreadable: "
			if err == nil {
				miss = w.want(st)
			} else {
				miss += err.Error()
			}
			if miss == "" {
				got[i] = time.Since(t0)
				left--
			}
			last[i] = miss
		}
		if left == 0 {
			return got, nil
		}
		if time.Since(t0) > timeout {
			var why []string
			for i, w := range ws {
				if got[i] == 0 {
					why = append(why, fmt.Sprintf("%s: %s", w.n.name, last[i]))
				}
			}
			return got, fmt.Errorf("not converged after %s: %s", timeout, strings.Join(why, "; "))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
