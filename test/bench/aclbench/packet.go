//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// packetRun is one per-packet measurement: a frontend container talking to
// a backend one across the host namespace the driver runs in, under the
// policy with no filler rules and under the one with N of them.
type packetRun struct {
	fe, be, to   string // container netns names; the backend's address
	port         int
	dir, ctl     string
	self         string
	rules        int
	shape        string
	rounds       int
	dur          time.Duration
	conc         int
	stdout       io.Writer
	serverStdin  io.WriteCloser
	serverExited chan error
}

func packetCmd(args []string) error {
	fs := flag.NewFlagSet("packet", flag.ContinueOnError)
	r := packetRun{stdout: os.Stdout}
	fs.StringVar(&r.fe, "fe", "", "frontend container netns name")
	fs.StringVar(&r.be, "be", "", "backend container netns name")
	fs.StringVar(&r.to, "to", "", "backend container address")
	fs.IntVar(&r.port, "port", 8080, "measured port (the one the policy allows)")
	fs.StringVar(&r.dir, "dir", "", "directory gen wrote")
	fs.StringVar(&r.ctl, "zonenetctl", "", "zonenetctl binary")
	fs.IntVar(&r.rules, "rules", 10000, "filler rules of the loaded policy")
	fs.StringVar(&r.shape, "shape", "rules", "shape gen used (recorded only)")
	fs.IntVar(&r.rounds, "rounds", 3, "rounds; each measures both policies")
	fs.DurationVar(&r.dur, "dur", 4*time.Second, "length of each stream and connect run")
	fs.IntVar(&r.conc, "conc", 4, "connect loops in parallel")
	outer := fs.String("outer-netns", "", "netns file of the machine's own namespace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if r.fe == "" || r.be == "" || r.to == "" || r.dir == "" || r.ctl == "" || *outer == "" {
		return errors.New("packet: -fe, -be, -to, -dir, -zonenetctl and -outer-netns are required")
	}
	if err := notOuterNetNS(*outer); err != nil {
		return err
	}
	var err error
	if r.self, err = os.Executable(); err != nil {
		return err
	}
	if err := r.startServer(); err != nil {
		return err
	}
	defer r.serverStdin.Close()
	return r.measure()
}

// startServer runs `aclbench serve` in the backend namespace and waits for
// it to listen. Closing serverStdin stops it.
func (r *packetRun) startServer() error {
	cmd := exec.Command("ip", "netns", "exec", r.be, r.self, "serve", "-listen", fmt.Sprintf(":%d", r.port))
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	r.serverStdin = in
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		in.Close()
		_ = cmd.Wait()
		return fmt.Errorf("server in %s did not start: %q %v", r.be, line, err)
	}
	r.serverExited = make(chan error, 1)
	go func() { r.serverExited <- cmd.Wait() }()
	return nil
}

func (r *packetRun) measure() error {
	step := func(s string) { fmt.Fprintf(os.Stderr, "  %s\n", s) }
	step("warm-up (untimed)")
	if err := r.apply(0); err != nil {
		return err
	}
	if _, err := r.load("stream", time.Second); err != nil {
		return err
	}
	if _, err := r.load("connect", time.Second); err != nil {
		return err
	}
	for round := 1; round <= r.rounds; round++ {
		// Alternate which policy goes first, so drift in the machine's
		// load does not always favour one.
		order := []int{0, r.rules}
		if round%2 == 0 {
			order = []int{r.rules, 0}
		}
		for _, n := range order {
			step(fmt.Sprintf("round %d/%d: %d filler rules: stream %s, connect loops %s", round, r.rounds, n, r.dur, r.dur))
			if err := r.apply(n); err != nil {
				return err
			}
			st, err := r.load("stream", r.dur)
			if err != nil {
				return err
			}
			before, err := measuredHits()
			if err != nil {
				return err
			}
			cn, err := r.load("connect", r.dur)
			if err != nil {
				return err
			}
			after, err := measuredHits()
			if err != nil {
				return err
			}
			cn.Hits = after - before
			// Each exchange is a new connection whose SYN the measured
			// rule accepts: fewer hits would mean the traffic took a
			// shortcut past the policy and the figure means nothing.
			if cn.Hits < cn.Conns {
				return fmt.Errorf("%d filler rules: %d connections but the measured rule accepted only %d packets", n, cn.Conns, cn.Hits)
			}
			for _, rec := range []*record{&st, &cn} {
				rec.Rules, rec.Round, rec.Shape = n, round, r.shape
				if err := json.NewEncoder(r.stdout).Encode(rec); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// apply installs the policy with n filler rules, then checks it is in
// force: the filler rules' port must be closed to the frontend.
func (r *packetRun) apply(n int) error {
	select {
	case err := <-r.serverExited:
		return fmt.Errorf("server in %s exited: %v", r.be, err)
	default:
	}
	out, err := exec.Command(r.ctl, "policy", "apply", "--conflist", netConfPath(r.dir), "--policy", policyPath(r.dir, n)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("zonenetctl policy apply (%d rules): %w: %s", n, err, trim(string(out)))
	}
	got, err := r.client("probe", "-to", fmt.Sprintf("%s:%d", r.to, fillerPort), "-timeout", "300ms")
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(got)); s != "blocked" {
		return fmt.Errorf("%d filler rules: frontend -> backend port %d is %s, want blocked: the policy is not in force", n, fillerPort, s)
	}
	return nil
}

func (r *packetRun) load(mode string, dur time.Duration) (record, error) {
	out, err := r.client(mode, "-to", fmt.Sprintf("%s:%d", r.to, r.port), "-dur", dur.String(), "-conc", strconv.Itoa(r.conc))
	if err != nil {
		return record{}, err
	}
	var rec record
	if err := json.Unmarshal(out, &rec); err != nil {
		return record{}, fmt.Errorf("load %s: bad output %q: %w", mode, out, err)
	}
	return rec, nil
}

// client runs `aclbench load` in the frontend namespace.
func (r *packetRun) client(mode string, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.fe, r.self, "load", "-mode", mode}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("load -mode %s in %s: %w: %s", mode, r.fe, err, trim(stderr.String()))
	}
	return out, nil
}

var counterRe = regexp.MustCompile(`^\[(\d+):\d+\] -A `)

// measuredHits sums the packet counters of the measured rule's accepts in
// the host namespace's filter table.
func measuredHits() (int, error) {
	out, err := exec.Command("iptables-save", "-c", "-t", "filter").Output()
	if err != nil {
		return 0, fmt.Errorf("iptables-save -c: %w", err)
	}
	n, found := 0, false
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.Contains(l, "rule "+measuredRule+`"`) || !strings.HasSuffix(l, "-j ACCEPT") {
			continue
		}
		m := counterRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v, _ := strconv.Atoi(m[1])
		n += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no rule of the policy named %q in the filter table", measuredRule)
	}
	return n, nil
}
