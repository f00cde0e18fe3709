package ipam

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestTupleRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
	}{
		{"plain", []string{"prod", "abc123", "eth0"}},
		{"empty fields", []string{"", "", ""}},
		{"nul bytes", []string{"\x00", "a\x00b", "\x00\x01"}},
		{"escape lookalikes", []string{"\x00\xff", "\xff\x01", "\x01\x00"}},
		{"non utf8", []string{"\xc3\x28", "\xff\xfe", "eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeTuple(encodeTuple(tt.fields...))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !slices.Equal(got, tt.fields) {
				t.Fatalf("round trip = %q, want %q", got, tt.fields)
			}
		})
	}
}

func TestTupleOrder(t *testing.T) {
	// Each pair is (lower, higher) in (ContainerID, IfName) order.
	pairs := [][2][]string{
		{{"a", "eth0"}, {"a", "eth1"}},
		{{"a", "zzz"}, {"ab", "eth0"}},
		{{"a", "zzz"}, {"a\x00", "eth0"}},
		{{"a\x00", "zzz"}, {"a\x01", "eth0"}},
		{{"a", "eth0"}, {"a", "eth0\x00"}},
		{{"a\xff", "x"}, {"b", "x"}},
	}
	for _, p := range pairs {
		lo, hi := encodeTuple(p[0]...), encodeTuple(p[1]...)
		if bytes.Compare(lo, hi) >= 0 {
			t.Errorf("encode(%q) >= encode(%q)", p[0], p[1])
		}
	}
}

func TestDecodeTupleRejects(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		[]byte("abc"),        // unterminated
		{'a', 0x00},          // dangling escape
		{'a', 0x00, 0x02},    // unknown escape
		{0x00, 0x01, 'x'},    // trailing bytes
		{0x00, 0xff},         // literal NUL, no terminator
		{'a', 0x00, 0x01, 0}, // dangling escape after a field
	} {
		if got, err := decodeTuple(b); err == nil {
			t.Errorf("decodeTuple(%q) = %q, want error", b, got)
		}
	}
}

func TestIPKey(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "10.0.1.5", "255.255.255.255", "::", "fd00:0:3::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		a := netip.MustParseAddr(s)
		got, ok := decodeIPKey(ipKey(a))
		if !ok || got != a {
			t.Errorf("ipKey round trip of %s = %s, %v", a, got, ok)
		}
	}
	// Numeric order within a family, and IPv4 before IPv6.
	order := []string{"10.0.0.255", "10.0.1.0", "255.255.255.255", "::1", "fd00::ff", "fd00::100"}
	for i := 1; i < len(order); i++ {
		a, b := ipKey(netip.MustParseAddr(order[i-1])), ipKey(netip.MustParseAddr(order[i]))
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("ipKey(%s) >= ipKey(%s)", order[i-1], order[i])
		}
	}
	for _, b := range [][]byte{nil, {4, 1, 2, 3}, {6, 1, 2, 3, 4}, {5, 1, 2, 3, 4}} {
		if _, ok := decodeIPKey(b); ok {
			t.Errorf("decodeIPKey(%v) accepted", b)
		}
	}
}

// FuzzKey checks that store keys round-trip for any container ID and
// interface name (and block keys for any zone name and prefix), that their byte order is the order of the fields, and that
// decoding arbitrary bytes neither panics nor accepts a non-canonical form.
func FuzzKey(f *testing.F) {
	f.Add("prod", "abc123", "eth0", []byte{})
	f.Add("", "\x00", "a\x00\x01", []byte{'a', 0x00, 0x01})
	f.Add("n\x00", "\xff", "\x01", []byte{0x00, 0xff, 0x00, 0x01})
	f.Add("x", "x\x00\xff", "y", []byte{0x00, 0x02})
	f.Fuzz(func(t *testing.T, network, cid, ifname string, raw []byte) {
		fields := []string{network, cid, ifname}
		got, err := decodeTuple(encodeTuple(fields...))
		if err != nil || !slices.Equal(got, fields) {
			t.Fatalf("round trip of %q = %q, %v", fields, got, err)
		}

		k := Key{Network: network, ContainerID: cid, IfName: ifname}
		back, err := decodeAttKey(network, attKey(k))
		if err != nil || back != k {
			t.Fatalf("attachment key round trip of %+v = %+v, %v", k, back, err)
		}

		a, b := []string{network, cid}, []string{cid, ifname}
		if want, got := slices.Compare(a, b), bytes.Compare(encodeTuple(a...), encodeTuple(b...)); want != got {
			t.Fatalf("order of %q vs %q: fields say %d, keys say %d", a, b, want, got)
		}

		if len(raw) > 0 {
			bits := int(raw[0]) % 129
			for _, a := range []netip.Addr{netip.AddrFrom16([16]byte([]byte(cid + strings.Repeat("\x00", 16))[:16])),
				netip.AddrFrom4([4]byte([]byte(ifname + "\x00\x00\x00\x00")[:4]))} {
				if bits > a.BitLen() {
					continue
				}
				p := netip.PrefixFrom(a, bits).Masked()
				z, back, err := decodeBlockKey(blockKey(network, p))
				if err != nil || z != network || back != p {
					t.Fatalf("block key round trip of (%q, %s) = (%q, %s), %v", network, p, z, back, err)
				}
			}
		}
		if z, p, err := decodeBlockKey(raw); err == nil {
			if re := blockKey(z, p); !bytes.Equal(re, raw) {
				t.Fatalf("decodeBlockKey(%q) = (%q, %s), which encodes to %q", raw, z, p, re)
			}
		}

		if dec, err := decodeTuple(raw); err == nil {
			if re := encodeTuple(dec...); !bytes.Equal(re, raw) {
				t.Fatalf("decodeTuple(%q) = %q, which encodes to %q", raw, dec, re)
			}
		}
	})
}
