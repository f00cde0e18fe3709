//go:build linux

// Command netdelay delays chosen packets inside a network namespace until
// it is interrupted, for trying a "far apart" topology by hand; tests use
// the netdelay package directly.
//
//	netdelay -netns NAME|PATH [-chain POSTROUTING] [-in IF] [-out IF]
//	         [-src CIDR] [-dst CIDR] [-proto tcp] -delay 80ms [-jitter 5ms]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/test/netdelay"
)

func main() {
	ns := flag.String("netns", "", "namespace name (under /run/netns) or path")
	var m netdelay.Match
	flag.StringVar(&m.Chain, "chain", "", "mangle chain (default POSTROUTING)")
	flag.StringVar(&m.In, "in", "", "input interface")
	flag.StringVar(&m.Out, "out", "", "output interface")
	src := flag.String("src", "", "source prefix")
	dst := flag.String("dst", "", "destination prefix")
	flag.StringVar(&m.Proto, "proto", "", "tcp, udp, icmp or icmpv6")
	var o netdelay.Options
	flag.DurationVar(&o.Delay, "delay", 80*time.Millisecond, "added to every packet")
	flag.DurationVar(&o.Jitter, "jitter", 0, "uniform random offset, plus or minus")
	flag.StringVar(&o.Tag, "tag", "cmd", "goes into the rule's comment")
	flag.Parse()
	if err := run(*ns, *src, *dst, m, o); err != nil {
		fmt.Fprintln(os.Stderr, "netdelay:", err)
		os.Exit(1)
	}
}

func run(ns, src, dst string, m netdelay.Match, o netdelay.Options) error {
	if ns == "" {
		return fmt.Errorf("-netns is required")
	}
	if !strings.Contains(ns, "/") {
		ns = netns.Path(ns)
	}
	var err error
	if src != "" {
		if m.Src, err = netip.ParsePrefix(src); err != nil {
			return fmt.Errorf("-src: %w", err)
		}
	}
	if dst != "" {
		if m.Dst, err = netip.ParsePrefix(dst); err != nil {
			return fmt.Errorf("-dst: %w", err)
		}
	}
	// Before the delayer starts, so an interrupt always reaches Stop.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	d, err := netdelay.StartWith(ns, m, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "netdelay: queue %d in %s, %s (±%s); interrupt to stop\n", d.Queue(), ns, o.Delay, o.Jitter)
	<-sig
	err = d.Stop()
	fmt.Fprintf(os.Stderr, "netdelay: %+v\n", d.Stats())
	return err
}
