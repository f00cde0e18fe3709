package ipam

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
)

// span is a pool reduced to what the allocator walks: the assignable range
// [first, last] (the configured range minus the network address and the IPv4
// broadcast address) and the reserved addresses that may fall inside it.
type span struct {
	subnet      netip.Prefix
	network     netip.Addr
	broadcast   netip.Addr // IPv4 only; invalid for IPv6
	gateway     netip.Addr // invalid = none
	start, end  netip.Addr // as configured, for messages
	first, last netip.Addr // assignable, inclusive; invalid when empty
	reserved    map[netip.Addr]struct{}
}

// normAddr folds IPv4-mapped IPv6 addresses to IPv4 and drops any zone, so
// one address has one key in the index.
func normAddr(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	return a.Unmap().WithZone("")
}

func newSpan(p Pool) (span, error) {
	if !p.Subnet.IsValid() {
		return span{}, fmt.Errorf("pool subnet %q is not a valid prefix", p.Subnet)
	}
	sub := p.Subnet.Masked()
	if sub.Addr().Is4In6() && sub.Bits() >= 96 {
		sub = netip.PrefixFrom(sub.Addr().Unmap(), sub.Bits()-96)
	}
	s := span{
		subnet:   sub,
		network:  sub.Addr(),
		gateway:  normAddr(p.Gateway),
		start:    normAddr(p.Start),
		end:      normAddr(p.End),
		reserved: make(map[netip.Addr]struct{}, len(p.Exclude)+1),
	}
	if !s.start.IsValid() || !s.end.IsValid() {
		return span{}, fmt.Errorf("pool %s: range start and end are required", sub)
	}
	if !sub.Contains(s.start) || !sub.Contains(s.end) {
		return span{}, fmt.Errorf("pool %s: range %s-%s is not inside the subnet", sub, s.start, s.end)
	}
	if s.start.Compare(s.end) > 0 {
		return span{}, fmt.Errorf("pool %s: range start %s is after range end %s", sub, s.start, s.end)
	}
	top := lastAddr(sub)
	if sub.Addr().Is4() {
		s.broadcast = top
		top = top.Prev()
	}
	if s.gateway.IsValid() {
		s.reserved[s.gateway] = struct{}{}
	}
	for _, x := range p.Exclude {
		s.reserved[normAddr(x)] = struct{}{}
	}
	first, last := s.start, s.end
	if low := s.network.Next(); first.Compare(low) < 0 {
		first = low
	}
	if last.Compare(top) > 0 {
		last = top
	}
	if first.IsValid() && last.IsValid() && sub.Contains(first) && sub.Contains(last) && first.Compare(last) <= 0 {
		s.first, s.last = first, last
	}
	return s, nil
}

func (s *span) empty() bool { return !s.first.IsValid() }

func (s *span) inRange(a netip.Addr) bool {
	return !s.empty() && a.Compare(s.first) >= 0 && a.Compare(s.last) <= 0
}

func (s *span) isReserved(a netip.Addr) bool {
	_, ok := s.reserved[a]
	return ok
}

// staticProblem says why a cannot be assigned from this pool, or "" if it can
// (leases aside).
func (s *span) staticProblem(a netip.Addr) string {
	switch {
	case a == s.network:
		return fmt.Sprintf("is the network address of %s", s.subnet)
	case a == s.broadcast:
		return fmt.Sprintf("is the broadcast address of %s", s.subnet)
	case a == s.gateway:
		return "is the gateway of the zone"
	case s.isReserved(a):
		return "is excluded from the zone's range"
	case a.Compare(s.start) < 0 || a.Compare(s.end) > 0:
		return fmt.Sprintf("is outside the zone's range %s-%s", s.start, s.end)
	}
	return ""
}

// size is the number of assignable addresses, saturating at MaxUint64.
func (s *span) size() uint64 {
	if s.empty() {
		return 0
	}
	n, ok := count(s.first, s.last)
	if !ok {
		return math.MaxUint64
	}
	for a := range s.reserved {
		if s.inRange(a) {
			n--
		}
	}
	return n
}

// count returns last-first+1, or false if that does not fit in a uint64.
func count(first, last netip.Addr) (uint64, bool) {
	fh, fl := addrU128(first)
	lh, ll := addrU128(last)
	lo, borrow := bits.Sub64(ll, fl, 0)
	hi, _ := bits.Sub64(lh, fh, borrow)
	if hi != 0 || lo == math.MaxUint64 {
		return 0, false
	}
	return lo + 1, true
}

func addrU128(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// lastAddr is the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		// A shift by 32 or more yields 0 for a uint32, which suits a /32.
		v := binary.BigEndian.Uint32(b[:]) | uint32(math.MaxUint32)>>uint(p.Bits())
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	hi, lo := addrU128(p.Addr())
	if n := p.Bits(); n < 64 {
		hi |= uint64(math.MaxUint64) >> uint(n)
		lo = math.MaxUint64
	} else {
		lo |= uint64(math.MaxUint64) >> uint(n-64)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}
