//go:build linux

// Command cnibench times CNI plugin binaries the way a container runtime
// drives them: one exec per verb, the config on stdin, CNI_* in the
// environment. It is started by test/bench/cni-bench.sh, which builds the
// plugins and makes one throwaway network namespace per configuration to
// play the host; one `run` measures every configuration, then `table`
// prints the comparison.
//
//	cnibench run   -nsdir DIR -outer-netns F LABEL:CONFLIST:BINDIR:HOSTNS:OUT ...
//	cnibench fail  -label L -msg-file F -out R.json
//	cnibench table -base R.json [-extra R.json,...] -target R.json [-policy R.json] [-out F]
//	cnibench policy-net -policy FILE -need N ... (the zonenet config of a run with a policy)
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cnibench run|fail|table|policy-net [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "fail":
		err = failCmd(os.Args[2:])
	case "table":
		err = tableCmd(os.Args[2:])
	case "policy-net":
		err = policyNetCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cnibench:", err)
		os.Exit(1)
	}
}
