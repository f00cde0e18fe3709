package ipam

import (
	"fmt"
	"net/netip"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Allocate records req.Attachment with one address per pool: the static
// address requested for the pool's family, or the next free one after the
// pool's cursor otherwise. If an attachment with the same Key exists it is
// returned unchanged (a retried ADD gets the same addresses). Nothing is
// written unless every pool gets an address.
func (s *Store) Allocate(req Request) (Attachment, error) {
	a := req.Attachment
	if err := a.Key.validate(); err != nil {
		return Attachment{}, err
	}
	// A bad request is reported only when there is no record to return:
	// a retried ADD must get its attachment even if the config changed.
	spans, statics, reqErr := plan(req)
	if a.Created.IsZero() {
		a.Created = s.now()
	}

	var out Attachment
	err := s.update(func(tx *bolt.Tx) error {
		nb, err := writeNet(tx, a.Network)
		if err != nil {
			return err
		}
		if v := nb.att.Get(attKey(a.Key)); v != nil {
			out, err = s.load(a.Key, v)
			return err
		}
		if reqErr != nil {
			return reqErr
		}
		out, err = allocateIn(nb, a, spans, statics, req.InBlocks)
		return err
	})
	if err != nil {
		return Attachment{}, fmt.Errorf("allocate for %s: %w", a.Key, err)
	}
	return out, nil
}

// plan checks the pools and matches the static addresses to them.
func plan(req Request) ([]span, []netip.Addr, error) {
	spans := make([]span, len(req.Pools))
	for i, p := range req.Pools {
		sp, err := newSpan(p)
		if err != nil {
			return nil, nil, fmt.Errorf("zone %s of network %s: %w", req.Zone, req.Network, err)
		}
		spans[i] = sp
	}
	statics, err := placeStatics(req.Attachment, spans, req.Static)
	if err != nil {
		return nil, nil, err
	}
	return spans, statics, nil
}

// allocateIn leases one address per pool for a new attachment and stores
// it; it runs inside Allocate's transaction, so in cluster mode the blocks
// it reads are the ones it allocates from.
func allocateIn(nb netBuckets, a Attachment, spans []span, statics []netip.Addr, inBlocks bool) (Attachment, error) {
	ak := attKey(a.Key)
	var blocks []netip.Prefix
	if inBlocks {
		var err error
		if blocks, err = zoneBlocks(nb.blocks, a.Zone); err != nil {
			return Attachment{}, err
		}
	}
	a.IPs = make([]netip.Prefix, 0, len(spans))
	for i := range spans {
		sp := &spans[i]
		ip := statics[i]
		if ip.IsValid() {
			if inBlocks && !slices.ContainsFunc(blocks, func(b netip.Prefix) bool { return b.Contains(ip) }) {
				return Attachment{}, &StaticError{IP: ip, Network: a.Network, Zone: a.Zone, Reason: fmt.Sprintf(
					"is not inside a block this node owns (blocks of the zone here: %v); in cluster mode a static address must come from this node's blocks",
					sp.blocksIn(blocks))}
			}
			if err := checkFree(nb, a, ip); err != nil {
				return Attachment{}, err
			}
		} else {
			var ok bool
			var err error
			if ip, ok, err = nextFree(nb, a, sp, sp.segments(blocks, inBlocks)); err != nil {
				return Attachment{}, err
			}
			if !ok {
				return Attachment{}, exhausted(a, sp, blocks, inBlocks)
			}
		}
		if err := nb.ip.Put(ipKey(ip), ak); err != nil {
			return Attachment{}, err
		}
		a.IPs = append(a.IPs, netip.PrefixFrom(ip, sp.subnet.Bits()))
	}
	rec, err := encodeRecord(a)
	if err != nil {
		return Attachment{}, err
	}
	if err := nb.att.Put(ak, rec); err != nil {
		return Attachment{}, err
	}
	return a, nil
}

// exhausted says why a pool gave no address: the zone's range is used up
// (or empty), or, in cluster mode, this node's blocks are.
func exhausted(a Attachment, sp *span, blocks []netip.Prefix, inBlocks bool) error {
	if inBlocks && !sp.empty() {
		return &BlocksFullError{Network: a.Network, Zone: a.Zone, Subnet: sp.subnet, Blocks: sp.blocksIn(blocks)}
	}
	e := &ExhaustedError{Network: a.Network, Zone: a.Zone, Subnet: sp.subnet, First: sp.first, Last: sp.last}
	if sp.empty() {
		e.First, e.Last = sp.start, sp.end
	}
	return e
}

// placeStatics matches each requested address to the pool whose subnet holds
// it; the result has one entry per pool, invalid where the pool allocates
// dynamically. Only the lease check is left for the transaction.
func placeStatics(a Attachment, spans []span, want []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, len(spans))
	var seen4, seen6 bool
	for _, raw := range want {
		ip := normAddr(raw)
		fail := func(format string, args ...any) error {
			return &StaticError{IP: ip, Reason: fmt.Sprintf(format, args...), Network: a.Network, Zone: a.Zone}
		}
		if !ip.IsValid() {
			return nil, fail("is not a valid address")
		}
		seen := &seen6
		if ip.Is4() {
			seen = &seen4
		}
		if *seen {
			return nil, fail("is a second address of its family; the zone takes one per family")
		}
		*seen = true
		idx := -1
		for i := range spans {
			if spans[i].subnet.Contains(ip) {
				idx = i
				break
			}
		}
		if idx < 0 {
			subnets := make([]netip.Prefix, len(spans))
			for i := range spans {
				subnets[i] = spans[i].subnet
			}
			return nil, fail("is not in any subnet of the zone %v", subnets)
		}
		if why := spans[idx].staticProblem(ip); why != "" {
			return nil, fail("%s", why)
		}
		out[idx] = ip
	}
	return out, nil
}

func checkFree(nb netBuckets, a Attachment, ip netip.Addr) error {
	v := nb.ip.Get(ipKey(ip))
	if v == nil {
		return nil
	}
	reason := "is already leased"
	if k, err := decodeAttKey(a.Network, v); err == nil {
		reason = fmt.Sprintf("is already leased to container %s interface %s", k.ContainerID, k.IfName)
	}
	return &StaticError{IP: ip, Reason: reason, Network: a.Network, Zone: a.Zone}
}

// nextFree hands out the first free address of the segments after the
// pool's cursor, wrapping around to the first segment once, and moves the
// cursor to it; found is false when every segment is taken. Round robin
// keeps a just-released address out of use for as long as possible, so a
// stale ARP entry or connection does not reach a new container.
func nextFree(nb netBuckets, a Attachment, sp *span, segs []seg) (ip netip.Addr, found bool, err error) {
	if len(segs) == 0 {
		return netip.Addr{}, false, nil
	}
	ck := cursorKey(a.Zone, sp.subnet)
	start, from := 0, segs[0].first
	if last, ok := decodeIPKey(nb.cursor.Get(ck)); ok {
		// Start in the first segment that ends after the cursor; past
		// the last one, wrap to the first.
		for i, s := range segs {
			if last.Compare(s.last) >= 0 {
				continue
			}
			start, from = i, s.first
			if last.Compare(s.first) >= 0 {
				from = last.Next()
			}
			break
		}
	}
	c := nb.ip.Cursor()
	ip, found = scan(c, sp, from, segs[start].last)
	for j := 1; !found && j < len(segs); j++ {
		s := segs[(start+j)%len(segs)]
		ip, found = scan(c, sp, s.first, s.last)
	}
	if !found && from != segs[start].first {
		ip, found = scan(c, sp, segs[start].first, from.Prev())
	}
	if !found {
		return netip.Addr{}, false, nil
	}
	if err := nb.cursor.Put(ck, ipKey(ip)); err != nil {
		return netip.Addr{}, false, err
	}
	return ip, true, nil
}

// scan returns the lowest address of [from, to] that is neither leased nor
// reserved. It never enumerates the range: one Seek in the index finds the
// lowest lease at or above the candidate, and the walk only steps through
// leased and reserved addresses, so its cost is O(log n) plus the length of
// the run of taken addresses after the cursor, not the size of the range.
func scan(c *bolt.Cursor, sp *span, from, to netip.Addr) (netip.Addr, bool) {
	k, _ := c.Seek(ipKey(from))
	used, haveUsed := decodeIPKey(k)
	for a := from; a.IsValid() && a.Compare(to) <= 0; a = a.Next() {
		// Invariant: used is the lowest lease >= a, if haveUsed.
		if haveUsed && used == a {
			k, _ = c.Next()
			used, haveUsed = decodeIPKey(k)
			continue
		}
		if sp.isReserved(a) {
			continue
		}
		return a, true
	}
	return netip.Addr{}, false
}
