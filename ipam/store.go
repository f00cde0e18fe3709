package ipam

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/zonenet/zonenet/internal/flock"
)

// DefaultLockTimeout is used by Open when it is given no positive timeout:
// a plugin exec must fail with a clear error rather than hang forever behind
// a stuck peer.
const DefaultLockTimeout = 10 * time.Second

// FileName is the store's file in a data directory: the plugin and
// zonenetd open the same one.
const FileName = "zonenet.db"

// PathIn is the path of the store in dataDir.
func PathIn(dataDir string) string { return filepath.Join(dataDir, FileName) }

// schemaVersion is the layout of buckets described in doc.go.
const schemaVersion = "1"

var (
	bucketMeta     = []byte("meta")
	bucketNetworks = []byte("networks")
	bucketAtt      = []byte("attachments")
	bucketIP       = []byte("ips")
	bucketCursor   = []byte("cursors")
	bucketBlocks   = []byte("blocks")
	keySchema      = []byte("schema")
)

// Store is the local attachment store: one bbolt file for all networks.
// A Store holds the file's exclusive lock from Open to Close, so a plugin
// exec opens it, does its work and closes it promptly. Its methods may be
// called from several goroutines.
type Store struct {
	db   *bolt.DB
	lock *flock.Lock
	path string
	// Now stamps Created on attachments stored without one.
	Now func() time.Time
}

// Open opens (creating if needed) the store at path, waiting at most
// lockTimeout for other processes to release it (DefaultLockTimeout if
// lockTimeout <= 0). The parent directory is created with mode 0700 and the
// file with mode 0600.
func Open(path string, lockTimeout time.Duration) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty path")
	}
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create directory of store %s: %w", path, err)
	}
	lock, err := flock.Acquire(path+".lock", lockTimeout)
	if errors.Is(err, flock.ErrTimeout) {
		return nil, &lockTimeoutError{path: path, timeout: lockTimeout}
	}
	if err != nil {
		return nil, err
	}
	db, err := openBolt(path, lockTimeout)
	if err != nil {
		lock.Unlock()
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, &lockTimeoutError{path: path, timeout: lockTimeout}
		case errors.Is(err, bolterrors.ErrInvalid),
			errors.Is(err, bolterrors.ErrChecksum),
			errors.Is(err, bolterrors.ErrVersionMismatch),
			errors.Is(err, ErrCorrupt):
			return nil, fmt.Errorf("store %s is not a readable zonenet database: %w: %w", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, lock: lock, path: path, Now: time.Now}
	if err := s.checkSchema(); err != nil {
		_ = db.Close()
		lock.Unlock()
		return nil, err
	}
	return s, nil
}

// openBolt turns a panic of bbolt on a damaged file into an error: the
// plugin must still print a CNI error result.
func openBolt(path string, timeout time.Duration) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
}

func (s *Store) checkSchema() error {
	return s.view(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return nil // new file; written with the first mutation
		}
		if v := m.Get(keySchema); v != nil && string(v) != schemaVersion {
			return fmt.Errorf("store %s has layout version %q, this build reads %q", s.path, v, schemaVersion)
		}
		return nil
	})
}

// Path is the file of the store.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	defer s.lock.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// update runs fn in one read-write transaction: everything fn writes is
// committed together or not at all.
func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer s.recoverTx(&err)
	return s.db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if m.Get(keySchema) == nil {
			if err := m.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer s.recoverTx(&err)
	return s.db.View(fn)
}

// recoverTx reports a panic inside bbolt (it panics on some damaged pages)
// as an error naming the file; bbolt has rolled the transaction back.
func (s *Store) recoverTx(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("store %s: unexpected failure reading the database (damaged file?): %w: %v", s.path, ErrCorrupt, r)
	}
}

// netBuckets are the buckets of one network. blocks is nil in a file
// written before blocks existed, until the first write.
type netBuckets struct {
	att, ip, cursor, blocks *bolt.Bucket
}

// readNet returns the network's buckets, or ok=false if it has none yet.
func readNet(tx *bolt.Tx, network string) (nb netBuckets, ok bool) {
	all := tx.Bucket(bucketNetworks)
	if all == nil || network == "" {
		return nb, false
	}
	n := all.Bucket([]byte(network))
	if n == nil {
		return nb, false
	}
	nb = netBuckets{att: n.Bucket(bucketAtt), ip: n.Bucket(bucketIP), cursor: n.Bucket(bucketCursor),
		blocks: n.Bucket(bucketBlocks)}
	return nb, nb.att != nil && nb.ip != nil && nb.cursor != nil
}

func writeNet(tx *bolt.Tx, network string) (netBuckets, error) {
	all, err := tx.CreateBucketIfNotExists(bucketNetworks)
	if err != nil {
		return netBuckets{}, err
	}
	n, err := all.CreateBucketIfNotExists([]byte(network))
	if err != nil {
		return netBuckets{}, fmt.Errorf("bucket of network %q: %w", network, err)
	}
	var nb netBuckets
	for _, b := range []struct {
		dst  **bolt.Bucket
		name []byte
	}{{&nb.att, bucketAtt}, {&nb.ip, bucketIP}, {&nb.cursor, bucketCursor}, {&nb.blocks, bucketBlocks}} {
		if *b.dst, err = n.CreateBucketIfNotExists(b.name); err != nil {
			return netBuckets{}, fmt.Errorf("bucket %s of network %q: %w", b.name, network, err)
		}
	}
	return nb, nil
}

func (k Key) validate() error {
	switch {
	case k.Network == "":
		return errors.New("attachment key: empty network name")
	case k.ContainerID == "":
		return errors.New("attachment key: empty container ID")
	case k.IfName == "":
		return errors.New("attachment key: empty interface name")
	}
	return nil
}

// load decodes a stored record and checks it belongs under its key.
func (s *Store) load(k Key, v []byte) (Attachment, error) {
	a, err := decodeRecord(v)
	if err == nil && a.Key != k {
		err = fmt.Errorf("record holds key %s", a.Key)
	}
	if err != nil {
		return Attachment{}, fmt.Errorf("store %s: attachment %s: %w: %w", s.path, k, ErrCorrupt, err)
	}
	return a, nil
}

// Get returns the attachment stored under k.
func (s *Store) Get(k Key) (a Attachment, found bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		nb, ok := readNet(tx, k.Network)
		if !ok {
			return nil
		}
		v := nb.att.Get(attKey(k))
		if v == nil {
			return nil
		}
		a, err = s.load(k, v)
		found = err == nil
		return err
	})
	return a, found, err
}

// Put stores a as is, replacing any attachment with the same key. It is for
// delegated IPAM: the IPs came from elsewhere and are not checked against
// any pool. Each IP is indexed for Owner unless another attachment already
// holds it (host mode may report the same host addresses for many
// containers); Release only drops index entries that point to its own key.
func (s *Store) Put(a Attachment) error {
	if err := a.Key.validate(); err != nil {
		return err
	}
	if a.Created.IsZero() {
		a.Created = s.now()
	}
	rec, err := encodeRecord(a)
	if err != nil {
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		nb, err := writeNet(tx, a.Network)
		if err != nil {
			return err
		}
		ak := attKey(a.Key)
		if old := nb.att.Get(ak); old != nil {
			prev, err := s.load(a.Key, old)
			if err != nil {
				return err
			}
			if err := unindex(nb.ip, ak, prev.IPs); err != nil {
				return err
			}
		}
		for _, p := range a.IPs {
			ik := ipKey(normAddr(p.Addr()))
			if nb.ip.Get(ik) != nil {
				continue
			}
			if err := nb.ip.Put(ik, ak); err != nil {
				return err
			}
		}
		return nb.att.Put(ak, rec)
	})
	if err != nil {
		return fmt.Errorf("put attachment %s: %w", a.Key, err)
	}
	return nil
}

// unindex drops the index entries of ips that belong to ak.
func unindex(ipb *bolt.Bucket, ak []byte, ips []netip.Prefix) error {
	for _, p := range ips {
		ik := ipKey(normAddr(p.Addr()))
		if bytes.Equal(ipb.Get(ik), ak) {
			if err := ipb.Delete(ik); err != nil {
				return err
			}
		}
	}
	return nil
}

// Release deletes the attachment and frees its addresses. A missing
// attachment is not an error: found is false.
func (s *Store) Release(k Key) (a Attachment, found bool, err error) {
	if err := k.validate(); err != nil {
		return Attachment{}, false, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		nb, ok := readNet(tx, k.Network)
		if !ok {
			return nil
		}
		ak := attKey(k)
		v := nb.att.Get(ak)
		if v == nil {
			return nil
		}
		a, err = s.load(k, v)
		if err != nil {
			return err
		}
		if err := unindex(nb.ip, ak, a.IPs); err != nil {
			return err
		}
		found = true
		return nb.att.Delete(ak)
	})
	if err != nil {
		return Attachment{}, false, fmt.Errorf("release attachment %s: %w", k, err)
	}
	return a, found, nil
}
