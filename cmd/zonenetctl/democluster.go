package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/zonenet/zonenet/demo"
)

// clusterDemo is what `zonenetctl demo --nodes 3` was asked for.
type clusterDemo struct {
	plugin, zonenetd string
	delay, keep      bool
	ports            []int
	policy           []byte
	policyName       string
	dialTimeout      time.Duration
}

func runClusterDemo(ctx context.Context, o clusterDemo, stdout, stderr io.Writer) int {
	daemon, err := demo.FindBinary("zonenetd", o.zonenetd)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl demo: %v\n", err)
		return exitFailed
	}
	// The nodes table is this program's own `status --etcd`, run in the
	// underlay namespace where etcd listens.
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl demo: %v\n", err)
		return exitFailed
	}
	var delays []demo.Delay
	if o.delay {
		delays = demo.ContinentDelays
	}
	err = demo.RunCluster(ctx, demo.ClusterRunOptions{
		ClusterConfig: demo.ClusterConfig{
			Plugin:      o.plugin,
			Zonenetd:    daemon,
			Ctl:         self,
			Delays:      delays,
			Policy:      o.policy,
			Ports:       o.ports,
			DialTimeout: o.dialTimeout,
			Log:         stderr,
		},
		Out:        stdout,
		PolicyName: o.policyName,
		Keep:       o.keep,
	})
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, demo.ErrInterrupted):
		fmt.Fprintf(stderr, "zonenetctl demo: %v\n", err)
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "zonenetctl demo: FAILED:\n%v\n", err)
	return exitFailed
}
