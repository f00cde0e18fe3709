package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/cmd/zonenetctl/internal/status"
	"github.com/zonenet/zonenet/pki"
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
	endpoints := fs.String("etcd", "", "etcd client URLs, comma-separated (https://HOST:PORT)")
	ca := fs.String("ca", "", "CA certificate of the cluster")
	cert := fs.String("cert", "", "client certificate")
	key := fs.String("key", "", "key of --cert")
	prefix := fs.String("prefix", cluster.DefaultPrefix, "key prefix of the cluster")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *ca == "" || *cert == "" || *key == "" {
		fmt.Fprintln(stderr, "zonenetctl status: --ca, --cert and --key are required with --etcd: etcd is reached with mutual TLS only")
		return exitUsage
	}
	var eps []string
	for _, ep := range strings.Split(*endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep == "" {
			continue
		}
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep
		}
		eps = append(eps, ep)
	}
	tlsCfg, err := pki.Files{CA: *ca, Cert: *cert, Key: *key}.ClientConfig()
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl status: %v\n", err)
		return exitFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	store, err := cluster.Open(ctx, cluster.Config{Endpoints: eps, TLS: tlsCfg, Prefix: *prefix,
		DialTimeout: *timeout, RequestTimeout: *timeout})
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
