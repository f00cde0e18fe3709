package cluster

import (
	"context"
	"fmt"
)

// MaxPolicySize keeps a policy document well under etcd's request limit
// (1.5 MiB by default).
const MaxPolicySize = 1 << 20

// PutPolicy stores the policy document of a network for every node, and
// returns the revision of the change. The document is stored as given:
// callers validate it against the network's zones first (zonenetctl policy
// apply does).
func (s *Store) PutPolicy(ctx context.Context, network string, doc []byte) (int64, error) {
	what := "store the policy of network " + network
	if err := checkName(network); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if len(doc) == 0 || len(doc) > MaxPolicySize {
		return 0, fmt.Errorf("%s: document of %d bytes (want 1 to %d)", what, len(doc), MaxPolicySize)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Put(ctx, s.keys.policy(network), string(doc))
	if err != nil {
		return 0, s.wrap(ctx, what, err)
	}
	return resp.Header.Revision, nil
}

// Policy returns the policy document of a network, or an error wrapping
// ErrNotFound if it has none.
func (s *Store) Policy(ctx context.Context, network string) (Policy, error) {
	what := "read the policy of network " + network
	if err := checkName(network); err != nil {
		return Policy{}, fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.policy(network))
	if err != nil {
		return Policy{}, s.wrap(ctx, what, err)
	}
	if len(resp.Kvs) == 0 {
		return Policy{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	kv := resp.Kvs[0]
	return Policy{Network: network, Doc: kv.Value, Revision: kv.ModRevision}, nil
}

// DeletePolicy removes the policy of a network; removing a missing one
// succeeds.
func (s *Store) DeletePolicy(ctx context.Context, network string) error {
	what := "delete the policy of network " + network
	if err := checkName(network); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if _, err := s.cli.Delete(ctx, s.keys.policy(network)); err != nil {
		return s.wrap(ctx, what, err)
	}
	return nil
}
