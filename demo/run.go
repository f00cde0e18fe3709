package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrInterrupted is returned by Run when its context was cancelled (a
// signal); the topology has been torn down by then.
var ErrInterrupted = errors.New("interrupted")

// RunOptions drive Run.
type RunOptions struct {
	Config
	// Out receives the tables; nil discards them.
	Out io.Writer
	// Policy, when set, is what every port's matrix is expected to show;
	// nil means the truth table of Config.Policy.
	Policy Policy
	// PolicyName says in the output which policy is installed.
	PolicyName string
	// Keep leaves the topology up until ctx is cancelled, for exploring
	// with `ip netns exec`.
	Keep bool
}

// Run builds the topology, prints the attachment table and the
// reachability matrix, compares the matrix with the policy and tears
// everything down, also when ctx is cancelled midway. Any failure along the
// way, including cells that differ from the policy and leftovers found at
// teardown, makes it return an error.
func Run(ctx context.Context, opt RunOptions) (err error) {
	out := opt.Out
	if out == nil {
		out = io.Discard
	}
	if opt.PolicyName == "" {
		opt.PolicyName = "none (everything allowed)"
		if opt.Config.Policy != nil {
			opt.PolicyName = "given"
		}
	}
	d, err := New(opt.Config)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "zonenet demo: network %q, host namespace %s\nplugin: %s\n\n",
		d.topo.Network, d.hostName, opt.Plugin)

	var errs []error
	kept := false // the context ended a --keep wait, as it should
	defer func() {
		fmt.Fprintf(out, "\ntearing down ...\n")
		n := d.attemptedCount()
		t := time.Now()
		if terr := d.Teardown(); terr != nil {
			errs = append(errs, fmt.Errorf("teardown: %w", terr))
		} else {
			fmt.Fprintf(out, "detached %d containers, ran GC, removed the namespaces and the data dir (%s)\n",
				n, time.Since(t).Round(time.Millisecond))
		}
		if ctx.Err() != nil && !kept {
			errs = append(errs, ErrInterrupted)
		}
		err = errors.Join(errs...)
	}()

	t := time.Now()
	if serr := d.Setup(ctx); serr != nil && ctx.Err() == nil {
		errs = append(errs, fmt.Errorf("setup: %w", serr))
	}
	fmt.Fprintf(out, "Attachments (setup %s)\n", time.Since(t).Round(time.Millisecond))
	_ = WriteContainers(out, d.Containers)
	if ctx.Err() != nil || len(errs) > 0 && !anyAttached(d.Containers) {
		return nil
	}

	t = time.Now()
	ms := d.Probe(ctx)
	fmt.Fprintf(out, "\nReachability: TCP connects, rows connect to columns (probed in %s)\n",
		time.Since(t).Round(time.Millisecond))
	fmt.Fprintf(out, "Policy: %s\n", opt.PolicyName)
	var diff []Mismatch
	cells := 0
	for i, m := range ms {
		port := d.cfg.Ports[i]
		want := d.Expected(m, port)
		if opt.Policy != nil {
			want = Expected(m, opt.Policy)
		}
		fmt.Fprintf(out, "\nPort %d, observed (%s):\n", port, Summary(m))
		_ = WriteMatrix(out, m, &want)
		fmt.Fprintf(out, "\nPort %d, expected from the policy (%s):\n", port, Summary(want))
		_ = WriteMatrix(out, want, nil)
		for _, x := range Diff(m, want) {
			x.Src = fmt.Sprintf("%s (port %d)", x.Src, port)
			diff = append(diff, x)
		}
		cells += countProbed(want)
	}
	fmt.Fprintf(out, "\n%s", MatrixLegend)
	fmt.Fprintf(out, "\n%d of %d cells differ from the expected policy\n", len(diff), cells)
	for _, x := range diff {
		fmt.Fprintf(out, "  %s\n", x)
	}
	if len(diff) > 0 {
		errs = append(errs, fmt.Errorf("%d reachability cells differ from the expected policy", len(diff)))
	}

	if opt.Keep && ctx.Err() == nil {
		fmt.Fprintf(out, "\nKeeping the topology up; press Ctrl-C to tear it down. Try:\n")
		fmt.Fprintf(out, "  ip netns exec %s ip -br addr\n", d.hostName)
		for _, c := range d.Containers {
			if c.Err == nil {
				fmt.Fprintf(out, "  ip netns exec %s ip route   # %s\n", c.Netns, c.Name)
				break
			}
		}
		<-ctx.Done()
		kept = true
		return nil
	}
	return nil
}

func anyAttached(cs []*Container) bool {
	for _, c := range cs {
		if c.Err == nil && c.IP.IsValid() {
			return true
		}
	}
	return false
}

func countProbed(m Matrix) int {
	n := 0
	for _, row := range m.Cells {
		for _, c := range row {
			if c.Outcome != Skip {
				n++
			}
		}
	}
	return n
}
