package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// secUsage holds, per node, how many containers it has in each zone:
// etcd keeps no per-container records (ADD never reaches it), so each
// daemon publishes its local counts for `zonenetctl status`.
const secUsage = "usage/"

// Usage is one node's containers per "network/zone".
type Usage struct {
	Node       string
	Containers map[string]int
	Updated    time.Time
}

type usageRecord struct {
	V          int            `json:"v"`
	Containers map[string]int `json:"containers"`
	Updated    time.Time      `json:"updated"`
}

// PutUsage publishes the registered node's container counts, under its
// lease: they go with the node when it dies.
func (s *Store) PutUsage(ctx context.Context, containers map[string]int) error {
	s.regMu.Lock()
	r := s.reg
	s.regMu.Unlock()
	if r == nil {
		return fmt.Errorf("publish usage: the node is not registered")
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	rec, err := json.Marshal(usageRecord{V: recordVersion, Containers: containers, Updated: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("publish usage: %w", err)
	}
	if _, err := s.cli.Put(ctx, s.cfg.Prefix+secUsage+r.name, string(rec), clientv3.WithLease(r.leaseID())); err != nil {
		return s.wrap(ctx, "publish usage of node "+r.name, err)
	}
	return nil
}

// Usages returns every live node's published counts, sorted by node.
func (s *Store) Usages(ctx context.Context) ([]Usage, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.cfg.Prefix+secUsage, clientv3.WithPrefix())
	if err != nil {
		return nil, s.wrap(ctx, "read usage", err)
	}
	var out []Usage
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), s.cfg.Prefix+secUsage)
		var rec usageRecord
		if checkName(name) != nil || json.Unmarshal(kv.Value, &rec) != nil {
			continue
		}
		out = append(out, Usage{Node: name, Containers: rec.Containers, Updated: rec.Updated})
	}
	slices.SortFunc(out, func(a, b Usage) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}
