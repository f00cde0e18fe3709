package ipam

import (
	"fmt"
	"net/netip"

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
		out, err = allocateIn(nb, a, spans, statics)
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
// it; it runs inside Allocate's transaction.
func allocateIn(nb netBuckets, a Attachment, spans []span, statics []netip.Addr) (Attachment, error) {
	ak := attKey(a.Key)
	var err error
	a.IPs = make([]netip.Prefix, 0, len(spans))
	for i := range spans {
		sp := &spans[i]
		ip := statics[i]
		if ip.IsValid() {
			if err := checkFree(nb, a, ip); err != nil {
				return Attachment{}, err
			}
		} else if ip, err = nextFree(nb, a, sp); err != nil {
			return Attachment{}, err
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

// nextFree hands out the first free address after the pool's cursor,
// wrapping around to the start of the range once, and moves the cursor to
// it. Round robin keeps a just-released address out of use for as long as
// possible, so a stale ARP entry or connection does not reach a new
// container.
func nextFree(nb netBuckets, a Attachment, sp *span) (netip.Addr, error) {
	exhausted := &ExhaustedError{Network: a.Network, Zone: a.Zone, Subnet: sp.subnet, First: sp.first, Last: sp.last}
	if sp.empty() {
		exhausted.First, exhausted.Last = sp.start, sp.end
		return netip.Addr{}, exhausted
	}
	ck := cursorKey(a.Zone, sp.subnet)
	from := sp.first
	if last, ok := decodeIPKey(nb.cursor.Get(ck)); ok && sp.inRange(last) {
		if n := last.Next(); sp.inRange(n) {
			from = n
		}
	}
	c := nb.ip.Cursor()
	ip, ok := scan(c, sp, from, sp.last)
	if !ok && from != sp.first {
		ip, ok = scan(c, sp, sp.first, from.Prev())
	}
	if !ok {
		return netip.Addr{}, exhausted
	}
	if err := nb.cursor.Put(ck, ipKey(ip)); err != nil {
		return netip.Addr{}, err
	}
	return ip, nil
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
