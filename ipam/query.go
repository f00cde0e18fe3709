package ipam

import (
	"fmt"
	"net/netip"

	bolt "go.etcd.io/bbolt"
)

// Read-only queries over the store.

// List returns the attachments of a network sorted by ContainerID, then
// IfName (the order of the keys in the file; see key.go).
func (s *Store) List(network string) ([]Attachment, error) {
	var out []Attachment
	err := s.view(func(tx *bolt.Tx) error {
		nb, ok := readNet(tx, network)
		if !ok {
			return nil
		}
		return nb.att.ForEach(func(kb, v []byte) error {
			k, err := decodeAttKey(network, kb)
			if err != nil {
				return fmt.Errorf("store %s: network %s: key %q: %w: %w", s.path, network, kb, ErrCorrupt, err)
			}
			a, err := s.load(k, v)
			if err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Owner returns the key of the attachment that holds ip in network.
func (s *Store) Owner(network string, ip netip.Addr) (k Key, found bool, err error) {
	if !ip.IsValid() {
		return Key{}, false, nil
	}
	err = s.view(func(tx *bolt.Tx) error {
		nb, ok := readNet(tx, network)
		if !ok {
			return nil
		}
		v := nb.ip.Get(ipKey(normAddr(ip)))
		if v == nil {
			return nil
		}
		k, err = decodeAttKey(network, v)
		if err != nil {
			return fmt.Errorf("store %s: owner of %s in network %s: %w: %w", s.path, ip, network, ErrCorrupt, err)
		}
		found = true
		return nil
	})
	return k, found, err
}

// Usage reports, for each pool of z in order, its assignable size and how
// many addresses of that range are leased in network.
func (s *Store) Usage(network string, z Zone) ([]PoolUsage, error) {
	spans := make([]span, len(z.Pools))
	for i, p := range z.Pools {
		sp, err := newSpan(p)
		if err != nil {
			return nil, fmt.Errorf("zone %s of network %s: %w", z.Name, network, err)
		}
		spans[i] = sp
	}
	out := make([]PoolUsage, len(spans))
	err := s.view(func(tx *bolt.Tx) error {
		nb, ok := readNet(tx, network)
		for i := range spans {
			sp := &spans[i]
			out[i] = PoolUsage{Subnet: sp.subnet, Size: sp.size()}
			if !ok || sp.empty() {
				continue
			}
			c := nb.ip.Cursor()
			for k, _ := c.Seek(ipKey(sp.first)); k != nil; k, _ = c.Next() {
				a, valid := decodeIPKey(k)
				if !valid || a.Is4() != sp.first.Is4() || a.Compare(sp.last) > 0 {
					break
				}
				if !sp.isReserved(a) {
					out[i].Used++
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Networks lists the networks that have a bucket in the store, sorted.
func (s *Store) Networks() ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		nets := tx.Bucket(bucketNetworks)
		if nets == nil {
			return nil
		}
		return nets.ForEach(func(k, v []byte) error {
			if v == nil { // a sub-bucket
				out = append(out, string(k))
			}
			return nil
		})
	})
	return out, err
}
