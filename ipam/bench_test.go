package ipam

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func benchPool() Pool {
	return Pool{
		Subnet:  netip.MustParsePrefix("10.0.0.0/16"),
		Gateway: netip.MustParseAddr("10.0.0.1"),
		Start:   netip.MustParseAddr("10.0.0.1"),
		End:     netip.MustParseAddr("10.0.255.254"),
	}
}

func benchRequest(cid string) Request {
	return Request{
		Attachment: Attachment{Key: Key{Network: "prod", ContainerID: cid, IfName: "eth0"}, Zone: "frontend", Mode: "bridge"},
		Pools:      []Pool{benchPool()},
	}
}

// BenchmarkAllocate measures one Allocate with 0 and 500 leases already in
// the network.
//
// commit: the whole call as a plugin exec makes it, with the fsync of the
// commit (which dominates); the lease is released outside the timer so the
// number of leases stays constant.
//
// tx-only: the same work in a transaction that is rolled back, i.e. the
// index lookups and writes without the disk. "wrap" puts the cursor at the
// end of the range so every allocation wraps and steps over the whole run of
// 500 leases: the worst case of the walk.
func BenchmarkAllocate(b *testing.B) {
	for _, existing := range []int{0, 500} {
		b.Run(fmt.Sprintf("commit/existing=%d", existing), func(b *testing.B) {
			s := benchStore(b, existing)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req := benchRequest(fmt.Sprint("bench-", i))
				if _, err := s.Allocate(req); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if _, _, err := s.Release(req.Key); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
	for _, tc := range []struct {
		existing int
		wrap     bool
	}{{0, false}, {500, false}, {500, true}, {5000, false}} {
		name := fmt.Sprintf("tx-only/existing=%d", tc.existing)
		if tc.wrap {
			name += "/wrap"
		}
		b.Run(name, func(b *testing.B) {
			s := benchStore(b, tc.existing)
			if tc.wrap {
				last := benchPool().End
				if err := s.update(func(tx *bolt.Tx) error {
					nb, err := writeNet(tx, "prod")
					if err != nil {
						return err
					}
					return nb.cursor.Put(cursorKey("frontend", benchPool().Subnet), ipKey(last))
				}); err != nil {
					b.Fatal(err)
				}
			}
			sp, err := newSpan(benchPool())
			if err != nil {
				b.Fatal(err)
			}
			spans := []span{sp}
			statics := make([]netip.Addr, 1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tx, err := s.db.Begin(true)
				if err != nil {
					b.Fatal(err)
				}
				req := benchRequest(fmt.Sprint("bench-", i))
				nb, err := writeNet(tx, "prod")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := allocateIn(nb, req.Attachment, spans, statics, false); err != nil {
					b.Fatal(err)
				}
				if err := tx.Rollback(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchStore(b *testing.B, existing int) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "zonenet.db"), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for i := range existing {
		if _, err := s.Allocate(benchRequest(fmt.Sprint("existing-", i))); err != nil {
			b.Fatal(err)
		}
	}
	return s
}
