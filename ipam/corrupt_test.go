package ipam

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestCorruptRecord(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{"not json", "{garbage"},
		{"future version", `{"v":2,"network":"prod","containerID":"a","ifName":"eth0"}`},
		{"no version", `{"network":"prod","containerID":"a","ifName":"eth0"}`},
		{"other key inside", `{"v":1,"network":"prod","containerID":"b","ifName":"eth0"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "zonenet.db")
			s, err := Open(path, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			k := Key{Network: "prod", ContainerID: "a", IfName: "eth0"}
			if err := s.Put(Attachment{Key: k}); err != nil {
				t.Fatal(err)
			}
			err = s.db.Update(func(tx *bolt.Tx) error {
				nb, _ := readNet(tx, k.Network)
				return nb.att.Put(attKey(k), []byte(tt.value))
			})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = s.Get(k)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Errorf("Get = %v, want ErrCorrupt naming the path", err)
			}
			if _, err := s.List(k.Network); !errors.Is(err, ErrCorrupt) {
				t.Errorf("List = %v, want ErrCorrupt", err)
			}
			if _, _, err := s.Release(k); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Release = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestSchemaMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zonenet.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(Attachment{Key: Key{Network: "n", ContainerID: "c", IfName: "i"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("9"))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path, time.Second); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of a newer layout = %v, want an error naming the path", err)
	}
}

// FuzzRecord feeds arbitrary bytes to the record decoder: it must not panic,
// and whatever it accepts must store again.
func FuzzRecord(f *testing.F) {
	rec, _ := encodeRecord(Attachment{
		Key:     Key{Network: "prod", ContainerID: "a", IfName: "eth0"},
		IPs:     []netip.Prefix{netip.MustParsePrefix("10.0.1.2/24")},
		Extra:   []byte(`{"x":1}`),
		Created: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	f.Add(rec)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"ips":["10.0.0.1/33"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeRecord(b)
		if err != nil {
			return
		}
		if _, err := encodeRecord(a); err != nil {
			t.Fatalf("decoded %q but cannot encode it again: %v", b, err)
		}
	})
}
