package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/cmd/zonenetctl/internal/policycheck"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/plugin"
)

const policyUsage = `Usage: zonenetctl policy check FILE [--zones-from CONFLIST]
       zonenetctl policy apply --conflist FILE [--policy FILE]
       zonenetctl policy push --etcd URL --ca F --cert F --key F --conflist FILE [--policy FILE]

Validates a policy document (YAML or JSON) and prints what may reach what.
Exit status: 0 valid, 1 invalid or unreadable (every error is printed),
2 usage error.
`

const policyCheckSynopsis = `policy check FILE [--zones-from CONFLIST]

Validates the policy document FILE (YAML or JSON): every error is printed
on stderr, naming the rule and the key, then warnings (redundant rules,
settings without effect). A valid policy is explained on stdout as a table
of the new connections each zone, the outside world (external) and the
host may open towards each other, followed by the per-container limits.

With --zones-from, the zones are the zonenet network's in that conflist
(or single plugin configuration): the policy may only name those, and any
subnet it restates must match. Without it, the policy's own zones section
must give every zone's subnet.

Exit status: 0 valid, 1 invalid or unreadable, 2 usage error.`

func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return exitOK
	case "check":
		return runPolicyCheck(args[1:], stdout, stderr)
	case "apply":
		return runPolicyApply(args[1:], stdout, stderr)
	case "push":
		return runPolicyPush(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "zonenetctl policy: unknown command %q\n\n%s", args[0], policyUsage)
	return exitUsage
}

func runPolicyCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy check", policyCheckSynopsis)
	zonesFrom := fs.String("zones-from", "", "conflist whose zonenet zones the policy must use")
	file, code, ok := parseWithFile(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	var zones []conf.Zone
	if *zonesFrom != "" {
		var err error
		if zones, err = policycheck.ZonesFromFile(*zonesFrom); err != nil {
			fmt.Fprintf(stderr, "zonenetctl policy check: --zones-from: %v\n", err)
			return exitFailed
		}
	}
	res, err := policycheck.Check(file, zones)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl policy check: %v\n", err)
		return exitFailed
	}
	policycheck.WriteProblems(stderr, res)
	if len(res.Errors) > 0 {
		fmt.Fprintf(stderr, "%s: invalid: %d errors\n", file, len(res.Errors))
		return exitFailed
	}
	if err := policycheck.WriteReport(stdout, file, res); err != nil {
		fmt.Fprintf(stderr, "zonenetctl policy check: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// parseWithFile is parse for a command taking exactly one file argument,
// before or after its flags.
func parseWithFile(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (string, int, bool) {
	var files []string
	rest := args
	for {
		fs.SetOutput(io.Discard)
		err := fs.Parse(rest)
		if err != nil || fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	// Parse again for the error and help handling of parse.
	if code, ok := parse(fs, rest, stdout, stderr); !ok {
		return "", code, false
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "%s: want one FILE, got %d\n", fs.Name(), len(files))
		fs.SetOutput(stderr)
		fs.Usage()
		return "", exitUsage, false
	}
	return files[0], 0, true
}

const policyApplySynopsis = `policy apply --conflist FILE [--policy FILE]

Validates the policy of the zonenet network in the conflist FILE (its
"policy" key, or --policy) against the network's zones and installs it in
the current network namespace's filter table, replacing the network's
previous rules in one iptables-restore per address family. Then it cuts
the tracked connections the new policy forbids (their conntrack entries
are deleted, so their next packet is judged, and dropped, by the new
rules); connections it still allows are left alone. Run it where the
plugin runs (the host's network namespace), as root.

Exit status: 0 installed, 1 invalid policy or failed, 2 usage error.`

func runPolicyApply(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy apply", policyApplySynopsis)
	conflist := fs.String("conflist", "", "conflist (or plugin configuration) of the zonenet network")
	policy := fs.String("policy", "", "policy file, instead of the conflist's policy key")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *conflist == "" {
		fmt.Fprintf(stderr, "%s: --conflist is required\n", fs.Name())
		fs.SetOutput(stderr)
		fs.Usage()
		return exitUsage
	}
	data, err := os.ReadFile(*conflist)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl policy apply: %v\n", err)
		return exitFailed
	}
	pol, cut, err := plugin.ApplyPolicy(acl.Exec{}, acl.KernelConntrack{}, data, *policy)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl policy apply: %s: %v\n", *conflist, err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "policy applied: %d zones, %d rules; %d tracked connections it forbids cut\n",
		len(pol.Zones), len(pol.Rules), cut)
	return exitOK
}
