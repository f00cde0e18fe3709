// Command zonenetd is the zonenet node daemon: one per node of a cluster.
// The work is in package daemon/node; this reads the settings, makes the
// logger and stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/zonenet/zonenet/daemon/node"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := node.Parse(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, node.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(os.Stderr, "zonenetd: %v\n(see zonenetd --help)\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "zonenetd: configuration:\n%v\n", err)
		return 2
	}
	log := cfg.NewLogger(os.Stderr)
	d, err := node.New(cfg, log, Version)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := d.Run(ctx); err != nil {
		log.Error("stopped on an error", "err", err)
		return 1
	}
	return 0
}
