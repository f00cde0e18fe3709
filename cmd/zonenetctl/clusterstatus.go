package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/zonenet/zonenet/cmd/zonenetctl/internal/status"
)

const clusterStatusSynopsis = `status --etcd URL[,URL...] --ca FILE --cert FILE --key FILE [--prefix PREFIX] [--timeout D]

Shows the cluster as etcd holds it: every node (up while its lease lives,
with its underlay address, VTEP MAC, time since it registered and its
blocks; owners of blocks whose lease expired are listed as down) and the
address blocks of every zone. etcd is reached over TLS 1.3 with the client
certificate --cert (zonenetctl certs node makes one).`

// wantsCluster reports whether status was asked for the cluster view.
func wantsCluster(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		return a == "-etcd" || a == "--etcd" || strings.HasPrefix(a, "-etcd=") || strings.HasPrefix(a, "--etcd=")
	})
}

func runClusterStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", clusterStatusSynopsis)
	ef := addEtcdFlags(fs)
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if err := ef.check(); err != nil {
		fmt.Fprintf(stderr, "zonenetctl status: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *ef.timeout)
	defer cancel()
	store, err := ef.open(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl status: %v\n", err)
		return exitFailed
	}
	defer store.Close()
	view, err := status.LoadCluster(ctx, store)
	if err == nil {
		err = status.WriteCluster(stdout, view, time.Now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl status: %v\n", err)
		return exitFailed
	}
	return exitOK
}
