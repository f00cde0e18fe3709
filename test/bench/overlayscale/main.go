//go:build linux

// Command overlayscale measures the overlay package against many remote
// nodes: in a fresh namespace playing a node, Reconcile of N fake peers
// from an empty device, again with nothing changed, and with one peer's
// MAC changed, one peer removed and one added; and it checks after each
// step that the changes written and the entries the kernel holds (read
// back with netlink) are exactly the expected ones. Every round of every
// size gets its own namespace, named znos-TAG-*, which this command
// removes; it is started by test/bench/overlay-scale.sh.
//
//	overlayscale -tag T [-peers 1000,50] [-rounds 5] [-out FILE] [-v]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() { os.Exit(mainRC()) }

// mainRC is main with deferred calls that run: 0 when every figure met
// its target, 3 when one missed, 1 on an error, 2 on a bad flag.
func mainRC() int {
	tag := flag.String("tag", strconv.Itoa(os.Getpid()), "names the namespaces: znos-TAG-*")
	sizes := flag.String("peers", "1000,50", "peer counts, comma separated")
	rounds := flag.Int("rounds", 5, "fresh namespaces per peer count; times are the median")
	outFile := flag.String("out", "", "also write the table to this file")
	verbose := flag.Bool("v", false, "log every step")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "overlayscale: "+f+"\n", a...) }
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 4 || n > 60000 {
			logf("-peers %q: want counts from 4 to 60000", s)
			return 2
		}
		ns = append(ns, n)
	}
	if *rounds < 1 {
		logf("-rounds %d: want at least 1", *rounds)
		return 2
	}
	startKiB, err := vmHWM()
	if err != nil {
		logf("%v", err)
		return 1
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			logf("%v", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	r := &runner{tag: *tag, rounds: *rounds, verbose: *verbose, log: logf}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		r.cleanup()
		os.Exit(130)
	}()
	rows, err := r.run(ns)
	r.cleanup()
	if err != nil {
		logf("%v", err)
		return 1
	}
	var out strings.Builder
	failed := table(&out, rows, *rounds, startKiB)
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

// runner owns the namespaces of one run.
type runner struct {
	tag     string
	rounds  int
	verbose bool
	log     func(string, ...any)

	mu   sync.Mutex
	live map[*node]bool
}

func (r *runner) cleanup() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for n := range r.live {
		if err := n.delete(); err != nil {
			r.log("delete netns %s: %v", n.name, err)
		}
		delete(r.live, n)
	}
}

func (r *runner) node(name string) (*node, error) {
	n, err := newNode(name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = map[*node]bool{}
	}
	r.live[n] = true
	return n, nil
}

func (r *runner) drop(n *node) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, n)
	return n.delete()
}

// vmHWM is this process's peak resident set size in KiB.
func vmHWM() (int, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
