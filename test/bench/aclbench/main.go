//go:build linux

// Command aclbench measures what zonenet's policy costs: how long a policy
// of N rules takes to install, and what N rules that never match cost the
// traffic that crosses the host. It is started by test/bench/acl-bench.sh,
// which builds the binaries and makes every network namespace; aclbench
// only ever runs inside those.
//
//	aclbench gen     -dir D -tag T -rules 100,1000,10000 [-shape rules|list]
//	aclbench install -method ours|per-rule -rules N ... >> results.jsonl
//	aclbench packet  -fe NS -be NS -to ADDR ... >> results.jsonl
//	aclbench serve   -listen :PORT          (inside the backend namespace)
//	aclbench load    -mode stream|connect|probe -to ADDR ...  (inside the frontend namespace)
//	aclbench table   -in results.jsonl [-out F]
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: aclbench gen|install|packet|serve|load|table [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"gen":     genCmd,
		"install": installCmd,
		"packet":  packetCmd,
		"serve":   serveCmd,
		"load":    loadCmd,
		"table":   tableCmd,
	}
	fn, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "aclbench: unknown subcommand %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := fn(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "aclbench:", err)
		os.Exit(1)
	}
}
