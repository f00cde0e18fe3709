// Command zonenetctl is the zonenet operator CLI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/cmd/zonenetctl/internal/status"
	"github.com/zonenet/zonenet/demo"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

const usage = `zonenetctl: operator CLI for the zonenet network plugin

Usage:
  zonenetctl <command> [flags]

Commands:
  certs     make the cluster's TLS material: a CA (certs ca) and node certificates (certs node)
  cleanup   remove every chain, ipset and bridge of zonenet's from this host (uninstall)
  demo      build the reference zone topology in network namespaces, probe it, tear it down
  policy    check a policy document (policy check FILE), install it (policy apply) or serve it cluster-wide (policy push)
  status    list the attachments recorded in a node's store, or with --etcd the cluster's nodes and blocks
  version   print the version

Run "zonenetctl <command> --help" for the flags of a command.
`

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "certs":
		return runCerts(args[1:], stdout, stderr)
	case "cleanup":
		return runCleanup(args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "policy":
		return runPolicy(args[1:], stdout, stderr)
	case "status":
		return runStatus(args[1:], stdout, stderr)
	case "version":
		return runVersion(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "zonenetctl: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// newFlags makes a subcommand's flag set. Parse errors and --help are
// reported by parse, not by the flag package.
func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("zonenetctl "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: zonenetctl %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse returns true when the command should go on, or else the exit code:
// help goes to stdout with 0, usage errors to stderr with 2.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK, false
	case err != nil:
		fs.SetOutput(stderr)
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		fs.Usage()
		return exitUsage, false
	}
	return 0, true
}

const demoSynopsis = `demo [--zonenet PATH] [--policy FILE|none] [--ports LIST] [--keep] [--parallel]
     [--nodes 3 [--zonenetd PATH] [--delay=false]]

Builds the reference topology inside network namespaces only: one namespace
plays the host, and seven containers sit in three zones (frontend
10.0.1.0/24, backend 10.0.2.0/24, mgmt 10.0.3.0/24 and fd00:0:3::/64).
Every container is
attached through the real zonenet binary, run inside the host namespace.
The network gets the policy --policy names (default: the reference policy,
deploy/policy-reference.yaml, built in; "none" installs no policy), and
admin-1 gets the static address 10.0.3.10 the policy opens backend:3306 to.
Prints the attachments and, for each port of --ports, the observed TCP
reachability matrix next to the one the policy predicts, then detaches every
container, garbage-collects the network and deletes the namespaces, also
on Ctrl-C or SIGTERM. Exits non-zero if any step failed, anything was left
behind, or the matrix differs from the expected policy. Needs root.

The plugin is --zonenet when given, else "zonenet" next to this program,
else "zonenet" in PATH. Namespaces are named zndemo-*-<pid>; after a kill -9,
remove leftovers with: ip netns list | grep ^zndemo-

With --nodes 3 the same network runs as a cluster: an underlay namespace
with a bridge and etcd (mutual TLS, certificates made for the run), and
three node namespaces (eu, us, ap), each with its own zonenetd (--zonenetd,
else "zonenetd" next to this program, in ./bin or in PATH) and containers of
every zone attached through the plugin with "store": "etcd". --delay (on by
default) puts the nodes continents apart on the underlay (eu-us 40 ms,
eu-ap 90 ms, us-ap 70 ms one way). Prints the nodes (zonenetctl status
--etcd), the attachments, the round trips between the nodes and the matrix
across all of them against the policy, then stops every process it started
and removes everything; exits non-zero if the matrix differs from the
policy or a round trip is shorter than its delay. Needs etcd (make setup).
Namespaces are named zncl-*-<pid>; the daemons die with the demo, but after
a kill -9 remove leftover namespaces with: ip netns list | grep ^zncl-`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", demoSynopsis)
	plugin := fs.String("zonenet", "", "path of the zonenet plugin binary")
	keep := fs.Bool("keep", false, "keep the topology up until Ctrl-C, to explore it with ip netns exec")
	parallel := fs.Bool("parallel", false, "attach the containers concurrently")
	ports := fs.String("ports", "8080,3306", "comma-separated TCP ports every container listens on and the demo probes")
	policyArg := fs.String("policy", "", `policy file to install ("none": no policy; default: the built-in reference policy)`)
	timeout := fs.Duration("dial-timeout", 0, "timeout of one reachability probe (default 1s, with --nodes 3 2s)")
	nodes := fs.Int("nodes", 1, "1: everything on one host; 3: a cluster of three nodes with etcd and a zonenetd each")
	zonenetd := fs.String("zonenetd", "", "path of the zonenetd binary (--nodes 3)")
	delay := fs.Bool("delay", true, "with --nodes 3: delay the underlay between the nodes as if continents apart")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *nodes != 1 && *nodes != 3 {
		fmt.Fprintf(stderr, "zonenetctl demo: --nodes %d: the demo has one node or three\n", *nodes)
		return exitUsage
	}
	portList, err := parsePorts(*ports)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl demo: --ports: %v\n", err)
		return exitUsage
	}
	policy, policyName := demo.ReferencePolicy, "reference (built in, = deploy/policy-reference.yaml)"
	switch *policyArg {
	case "":
	case "none":
		policy, policyName = nil, "none (everything allowed)"
	default:
		if policy, err = os.ReadFile(*policyArg); err != nil {
			fmt.Fprintf(stderr, "zonenetctl demo: %v\n", err)
			return exitFailed
		}
		policyName = *policyArg
	}
	if policy != nil {
		if err := demo.CheckPolicy(policy); err != nil {
			fmt.Fprintf(stderr, "zonenetctl demo: %s: %v\n", policyName, err)
			return exitFailed
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "zonenetctl demo: needs root to create network namespaces")
		return exitFailed
	}
	path, err := demo.FindPlugin(*plugin)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl demo: %v\n", err)
		return exitFailed
	}
	if *nodes == 3 {
		return runClusterDemo(ctx, clusterDemo{plugin: path, zonenetd: *zonenetd, delay: *delay, keep: *keep,
			ports: portList, policy: policy, policyName: policyName, dialTimeout: *timeout}, stdout, stderr)
	}
	if *timeout == 0 {
		*timeout = time.Second
	}
	err = demo.Run(ctx, demo.RunOptions{
		Config: demo.Config{
			Plugin:      path,
			Ports:       portList,
			Policy:      policy,
			DialTimeout: *timeout,
			Parallel:    *parallel,
			Log:         stderr,
		},
		Out:        stdout,
		Keep:       *keep,
		PolicyName: policyName,
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

// parsePorts parses a comma-separated list of TCP ports.
func parsePorts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%q is not a TCP port", f)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	if wantsCluster(args) {
		return runClusterStatus(args, stdout, stderr)
	}
	fs := newFlags("status", "status --data-dir DIR [--network NAME]\n\nLists the attachments recorded in the store of a node.\nWith --etcd it shows the cluster instead: zonenetctl status --etcd URL --help.")
	dataDir := fs.String("data-dir", "/var/lib/zonenet", "the plugin's dataDir (holds "+status.DBName+")")
	network := fs.String("network", "", "only this network (required if the store cannot list its networks)")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	atts, err := status.Load(*dataDir, *network)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl status: %v\n", err)
		return exitFailed
	}
	if err := status.Write(stdout, atts, time.Now()); err != nil {
		fmt.Fprintf(stderr, "zonenetctl status: %v\n", err)
		return exitFailed
	}
	return exitOK
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "version\n\nPrints the version of zonenetctl.")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	fmt.Fprintf(stdout, "zonenetctl %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
