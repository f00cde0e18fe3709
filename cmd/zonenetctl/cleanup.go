package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/plugin"
)

const cleanupSynopsis = `cleanup [--dry-run] [--force]

Removes, from the current network namespace, everything zonenet owns on a
host once its containers are gone: every iptables and ip6tables chain named
ZONENET-* or ZN-* (filter, nat, mangle, raw, security) with every rule that
jumps to one of them from any other chain, every ipset named zn-*, and
every bridge whose alias says zonenet made it. A bridge zonenet adopted
(one that existed before) only loses its zonenet alias. Nothing else is
changed: other chains, their rules, the built-in chains' policies, other
sets and links stay as they are.

While a zonenet bridge still has container ports it refuses and changes
nothing, unless --force (which deletes those bridges under the
containers). Prints each object it removes; running it again is a no-op.
Run it as root in the host's network namespace, after removing zonenet
from the runtimes' CNI configuration.

Exit status: 0 done (or nothing to do), 1 refused or failed, 2 usage error.`

func runCleanup(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("cleanup", cleanupSynopsis)
	dryRun := fs.Bool("dry-run", false, "print what would be removed, change nothing")
	force := fs.Bool("force", false, "clean up even though containers are still attached")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	n, err := plugin.Cleanup(plugin.CleanupOptions{
		IPT:    acl.Exec{},
		IPSets: acl.Exec{},
		Links:  plugin.NetlinkLinks{},
		DryRun: *dryRun,
		Force:  *force,
		Report: func(line string) { fmt.Fprintln(stdout, line) },
	})
	var busy *plugin.BusyError
	switch {
	case errors.As(err, &busy):
		fmt.Fprintf(stderr, "zonenetctl cleanup: refused, nothing changed: %v\n", err)
		return exitFailed
	case err != nil:
		fmt.Fprintf(stderr, "zonenetctl cleanup: %v\n", err)
		return exitFailed
	case n == 0:
		fmt.Fprintln(stdout, "nothing of zonenet's left")
	}
	return exitOK
}
