//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/zonenet/zonenet/conf"
)

// record is one measurement, one JSON line of the results file the script
// collects and `table` reads.
type record struct {
	Kind   string `json:"kind"`             // install, stream, connect
	Method string `json:"method,omitempty"` // install: ours or per-rule
	Rules  int    `json:"rules"`            // filler rules in force
	Shape  string `json:"shape,omitempty"`
	Round  int    `json:"round,omitempty"`

	Seconds      float64 `json:"seconds,omitempty"`      // install: the whole install
	ParseSeconds float64 `json:"parseSeconds,omitempty"` // install ours: parse + validate, in process
	Installed    int     `json:"installed,omitempty"`    // filler sources found in the kernel afterwards

	Mbps   float64 `json:"mbps,omitempty"`   // stream
	Conns  int     `json:"conns,omitempty"`  // connect: completed exchanges
	PerSec float64 `json:"perSec,omitempty"` // connect: exchanges per second
	Hits   int     `json:"hits,omitempty"`   // packets the measured rule accepted
}

func emit(r record) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(raw))
	return err
}

// scratchChain is where the per-rule baseline appends. It is never jumped
// to: the baseline measures the cost of installing, not of matching.
const scratchChain = "ZNAB-SCRATCH"

// installCmd times one install of N filler rules into the filter table of
// the namespace it runs in, which the script made fresh for it.
func installCmd(args []string) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	method := fs.String("method", "", "ours (zonenetctl policy apply) or per-rule (one iptables -A exec per rule)")
	n := fs.Int("rules", 0, "filler rules")
	dir := fs.String("dir", "", "directory gen wrote")
	shape := fs.String("shape", "rules", "shape gen used (recorded only)")
	ctl := fs.String("zonenetctl", "", "zonenetctl binary")
	outer := fs.String("outer-netns", "", "netns file of the machine's own namespace, which aclbench refuses to touch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *outer == "" || *n < 1 || *dir == "" {
		return errors.New("install: -outer-netns, -rules and -dir are required")
	}
	if err := notOuterNetNS(*outer); err != nil {
		return err
	}
	rec := record{Kind: "install", Method: *method, Rules: *n, Shape: *shape}
	var err error
	switch *method {
	case "ours":
		if *ctl == "" {
			return errors.New("install: -zonenetctl is required for -method ours")
		}
		rec.Seconds, rec.ParseSeconds, err = installOurs(*ctl, *dir, *n)
	case "per-rule":
		rec.Seconds, err = installPerRule(*n)
	default:
		return fmt.Errorf("install: -method %q: want ours or per-rule", *method)
	}
	if err != nil {
		return err
	}
	if rec.Installed, err = countFillers(*method); err != nil {
		return err
	}
	if rec.Installed < *n {
		return fmt.Errorf("install %s: only %d of %d filler sources are in the kernel", *method, rec.Installed, *n)
	}
	return emit(rec)
}

// installOurs times one exec of `zonenetctl policy apply`, fork to exit,
// as an operator would run it. The parse time is taken separately in this
// process, to tell validation apart from the kernel work.
func installOurs(ctl, dir string, n int) (total, parse float64, err error) {
	cmd := exec.Command(ctl, "policy", "apply", "--conflist", netConfPath(dir), "--policy", policyPath(dir, n))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err = cmd.Run()
	total = time.Since(t0).Seconds()
	if err != nil {
		return 0, 0, fmt.Errorf("zonenetctl policy apply (%d rules): %w: %s", n, err, trim(out.String()))
	}

	raw, err := os.ReadFile(netConfPath(dir))
	if err != nil {
		return 0, 0, err
	}
	c, err := conf.FromConfList(raw)
	if err != nil {
		return 0, 0, err
	}
	doc, err := os.ReadFile(policyPath(dir, n))
	if err != nil {
		return 0, 0, err
	}
	t0 = time.Now()
	if _, _, err := conf.ParsePolicy(doc, c.Zones); err != nil {
		return 0, 0, fmt.Errorf("parse %s: %w", policyPath(dir, n), err)
	}
	return total, time.Since(t0).Seconds(), nil
}

// installPerRule is the baseline: the same matches as our rendered rules,
// one `iptables -A` exec each, as a script looping over a list would do.
func installPerRule(n int) (float64, error) {
	if out, err := exec.Command("iptables", "-w", "-t", "filter", "-N", scratchChain).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("iptables -N %s: %w: %s", scratchChain, err, trim(string(out)))
	}
	every := max(n/10, 1000)
	if n > every {
		fmt.Fprintf(os.Stderr, "    per-rule baseline: %d execs of iptables -A, one per rule (this takes a while; progress every %d)\n", n, every)
	}
	t0 := time.Now()
	for i := range n {
		cmd := exec.Command("iptables", "-w", "-t", "filter", "-A", scratchChain,
			"-s", fillerAddr(i).String()+"/32", "-d", backendNet, "-p", "tcp", "-m", "tcp", "--dport", fmt.Sprint(fillerPort),
			"-m", "comment", "--comment", fmt.Sprintf("zonenet znab rule f%d", i), "-j", "ACCEPT")
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("iptables -A rule %d: %w: %s", i, err, trim(string(out)))
		}
		if done := i + 1; n > every && done%every == 0 && done < n {
			el := time.Since(t0).Seconds()
			fmt.Fprintf(os.Stderr, "    per-rule baseline: %d/%d rules, %.1f s, about %.0f s to go\n",
				done, n, el, el/float64(done)*float64(n-done))
		}
	}
	return time.Since(t0).Seconds(), nil
}

// countFillers counts the filler sources the kernel holds: rules matching
// one of them (ours lands in the network's chains, the baseline in the
// scratch chain), plus members of any ipset, so the check keeps working
// when the renderer moves address lists into sets.
func countFillers(method string) (int, error) {
	out, err := exec.Command("iptables-save", "-t", "filter").Output()
	if err != nil {
		return 0, fmt.Errorf("iptables-save: %w", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "-A ") || !isFillerSrc(l) {
			continue
		}
		if (method == "per-rule") == strings.HasPrefix(l, "-A "+scratchChain+" ") {
			n++
		}
	}
	if method != "ours" {
		return n, nil
	}
	if _, err := exec.LookPath("ipset"); err != nil {
		return n, nil
	}
	sets, err := exec.Command("ipset", "save").Output()
	if err != nil {
		return n, nil // no set support in this kernel: nothing to count
	}
	for _, l := range strings.Split(string(sets), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "add" && strings.HasPrefix(f[2], "198.1") {
			n++
		}
	}
	return n, nil
}

func isFillerSrc(l string) bool {
	return strings.Contains(l, " -s 198.18.") || strings.Contains(l, " -s 198.19.")
}

// notOuterNetNS refuses to run in the namespace the script was started
// from (the machine's own): every rule aclbench makes must land in a
// namespace the script created.
func notOuterNetNS(outer string) error {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("stat own netns: %w", err)
	}
	other, err := os.Stat(outer)
	if err != nil {
		return fmt.Errorf("stat outer netns %s: %w", outer, err)
	}
	if os.SameFile(self, other) {
		return errors.New("refusing to run in the outer network namespace; start me with `ip netns exec <bench-ns>`")
	}
	return nil
}

func trim(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	return s
}
