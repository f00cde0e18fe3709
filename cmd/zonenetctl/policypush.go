package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/cmd/zonenetctl/internal/policycheck"
	"github.com/zonenet/zonenet/conf"
)

const policyPushSynopsis = `policy push --etcd URL[,URL...] --ca FILE --cert FILE --key FILE --conflist FILE [--policy FILE] [--prefix PREFIX] [--timeout D]

Serves a policy to every node of the cluster. The policy (the conflist's
"policy" key, or --policy) is validated against the zones of the zonenet
network in the conflist exactly as "policy check --zones-from" does; an
invalid one is refused with the same messages and nothing is written.
A valid one is stored in etcd as the policy of the conflist's network,
and the revision of the write is printed. Every zonenetd serving that
network validates it again, writes it over the file its conflist's
"policy" key names (so the plugin's ADDs use it too) and installs it in
the node's filter table, cutting the connections it forbids. A node
whose conflist has no "policy" key does not take it.

Exit status: 0 stored (or already the cluster's policy), 1 invalid policy
or failed, 2 usage error.`

func runPolicyPush(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy push", policyPushSynopsis)
	ef := addEtcdFlags(fs)
	conflist := fs.String("conflist", "", "conflist (or plugin configuration) of the zonenet network")
	policy := fs.String("policy", "", "policy file, instead of the conflist's policy key")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	usage := func(err error) int {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		fs.SetOutput(stderr)
		fs.Usage()
		return exitUsage
	}
	if *conflist == "" {
		return usage(errors.New("--conflist is required"))
	}
	if err := ef.check(); err != nil {
		return usage(err)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "zonenetctl policy push: %v\n", err)
		return exitFailed
	}
	// Everything is checked before etcd is contacted: a refused policy
	// costs no connection and writes nothing.
	c, zones, err := pushTarget(*conflist)
	if err != nil {
		return fail(fmt.Errorf("--conflist: %w", err))
	}
	file := *policy
	if file == "" {
		if file = c.Policy; file == "" {
			return usage(fmt.Errorf(`%s has no "policy" key: name the policy file with --policy`, *conflist))
		}
	} else if c.Policy == "" {
		fmt.Fprintf(stderr, "warning: %s has no \"policy\" key: a zonenetd whose conflist has none does not take the pushed policy\n", *conflist)
	}
	doc, res, err := policycheck.Read(file, zones)
	if err != nil {
		return fail(err)
	}
	policycheck.WriteProblems(stderr, res)
	if len(res.Errors) > 0 {
		fmt.Fprintf(stderr, "%s: invalid: %d errors\n", file, len(res.Errors))
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s: valid: %d zones, %d rules, %d warnings\n", file, len(res.Policy.Zones), len(res.Policy.Rules), len(res.Warnings))

	ctx, cancel := context.WithTimeout(context.Background(), *ef.timeout)
	defer cancel()
	store, err := ef.open(ctx)
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	// The same bytes again would only bump the revision: the nodes compare
	// documents and would do nothing, but the operator would be told a
	// new revision went out.
	cur, err := store.Policy(ctx, c.Name)
	switch {
	case err == nil && bytes.Equal(cur.Doc, doc):
		fmt.Fprintf(stdout, "already the policy of network %s (revision %d): nothing written\n", c.Name, cur.Revision)
		return exitOK
	case err != nil && !errors.Is(err, cluster.ErrNotFound):
		return fail(err)
	}
	rev, err := store.PutPolicy(ctx, c.Name, doc)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "pushed the policy of network %s: revision %d\n", c.Name, rev)
	return exitOK
}

// pushTarget reads the network of a conflist and its zones as policy
// check --zones-from sees them. Only a cluster network has nodes that
// follow etcd.
func pushTarget(path string) (*conf.NetConf, []conf.Zone, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	zones, err := policycheck.ZonesFromConfList(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := conf.FromConfList(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if !c.Cluster() {
		return nil, nil, fmt.Errorf(`%s: network %s has store %q: only a network with "store": "etcd" is served by zonenetd; install its policy with policy apply`, path, c.Name, c.Store)
	}
	return c, zones, nil
}
