package main

import (
	"context"
	"errors"
	"flag"
	"strings"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/pki"
)

// etcdFlags are the flags of every command that talks to the cluster's
// etcd, so they are spelt and checked the same way everywhere.
type etcdFlags struct {
	endpoints, ca, cert, key, prefix *string
	timeout                          *time.Duration
}

func addEtcdFlags(fs *flag.FlagSet) *etcdFlags {
	return &etcdFlags{
		endpoints: fs.String("etcd", "", "etcd client URLs, comma-separated (https://HOST:PORT)"),
		ca:        fs.String("ca", "", "CA certificate of the cluster"),
		cert:      fs.String("cert", "", "client certificate"),
		key:       fs.String("key", "", "key of --cert"),
		prefix:    fs.String("prefix", cluster.DefaultPrefix, "key prefix of the cluster"),
		timeout:   fs.Duration("timeout", 10*time.Second, "give up after this long"),
	}
}

// check reports a usage error: etcd is reached with mutual TLS only, so
// the three files are required, not defaulted.
func (e *etcdFlags) check() error {
	if strings.TrimSpace(*e.endpoints) == "" {
		return errors.New("--etcd is required")
	}
	if *e.ca == "" || *e.cert == "" || *e.key == "" {
		return errors.New("--ca, --cert and --key are required with --etcd: etcd is reached with mutual TLS only")
	}
	return nil
}

// open connects to etcd; ctx bounds the dial.
func (e *etcdFlags) open(ctx context.Context) (*cluster.Store, error) {
	var eps []string
	for _, ep := range strings.Split(*e.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep == "" {
			continue
		}
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep
		}
		eps = append(eps, ep)
	}
	tlsCfg, err := pki.Files{CA: *e.ca, Cert: *e.cert, Key: *e.key}.ClientConfig()
	if err != nil {
		return nil, err
	}
	return cluster.Open(ctx, cluster.Config{Endpoints: eps, TLS: tlsCfg, Prefix: *e.prefix,
		DialTimeout: *e.timeout, RequestTimeout: *e.timeout})
}
