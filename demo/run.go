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
	// Policy is what the matrix is expected to show; nil means AllowAll.
	Policy Policy
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
	policy := opt.Policy
	if policy == nil {
		policy = AllowAll
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
	m := d.Probe(ctx)
	want := Expected(m, policy)
	fmt.Fprintf(out, "\nReachability: TCP connects to port %d, rows connect to columns (%s)\n",
		d.cfg.Port, time.Since(t).Round(time.Millisecond))
	_ = WriteMatrix(out, m, &want)
	fmt.Fprintf(out, "%s\n%s", Summary(m), MatrixLegend)
	if mm := Diff(m, want); len(mm) > 0 {
		fmt.Fprintf(out, "\n%d cells differ from the expected policy:\n", len(mm))
		for _, x := range mm {
			fmt.Fprintf(out, "  %s\n", x)
		}
		errs = append(errs, fmt.Errorf("%d reachability cells differ from the expected policy", len(mm)))
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
