package cluster

import (
	"net/netip"
	"slices"
	"strings"
)

// firstFree returns the lowest block of size bits in subnet that overlaps
// none of taken. It walks the taken prefixes in address order and jumps
// past each one it hits, so it costs the number of taken prefixes, never
// the number of blocks: an IPv6 /64 cut into /120 blocks is never
// enumerated. taken may hold prefixes of any size, inside the subnet or
// not.
func firstFree(subnet netip.Prefix, bits int, taken []netip.Prefix) (netip.Prefix, bool) {
	sorted := slices.Clone(taken)
	slices.SortFunc(sorted, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	cand := netip.PrefixFrom(subnet.Addr(), bits)
	for _, q := range sorted {
		if q.Addr().Is4() != cand.Addr().Is4() || lastAddr(q).Less(cand.Addr()) {
			continue // another family, or wholly below the candidate
		}
		if lastAddr(cand).Less(q.Addr()) {
			break // every later prefix starts further up: cand is free
		}
		next, ok := alignUp(lastAddr(q).Next(), bits)
		if !ok {
			return netip.Prefix{}, false
		}
		cand = next
		if !subnet.Contains(cand.Addr()) {
			return netip.Prefix{}, false
		}
	}
	return cand, subnet.Contains(cand.Addr())
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		setHostBits(b[:], p.Bits())
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	setHostBits(b[:], p.Bits())
	return netip.AddrFrom16(b)
}

func setHostBits(b []byte, bits int) {
	for i := range b {
		switch {
		case (i+1)*8 <= bits:
		case i*8 >= bits:
			b[i] = 0xff
		default:
			b[i] |= 0xff >> (bits - i*8)
		}
	}
}

// alignUp returns the first block of size bits that starts at or above a,
// or false past the end of the address space (a invalid counts as past the
// end: Next of the last address).
func alignUp(a netip.Addr, bits int) (netip.Prefix, bool) {
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, bits).Masked()
	if p.Addr() == a {
		return p, true
	}
	next := lastAddr(p).Next()
	if !next.IsValid() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(next, bits), true
}

// sortBlocks orders blocks by network, then address (IPv4 first), then
// size.
func sortBlocks(bs []Block) {
	slices.SortFunc(bs, func(a, b Block) int {
		if c := strings.Compare(a.Network, b.Network); c != 0 {
			return c
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
}
