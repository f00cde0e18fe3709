package ipam

import (
	"errors"
	"net/netip"
)

// Tuple encoding of bbolt keys. Each field is written with 0x00 escaped as
// 0x00 0xFF and is terminated by 0x00 0x01. The encoding is injective for
// arbitrary bytes (container IDs and interface names come from the runtime
// and are not trusted to avoid any separator), and it preserves order:
// comparing two encoded tuples bytewise compares their fields one after the
// other, so a bbolt cursor walks attachments sorted by (ContainerID, IfName).
const (
	escByte = 0x00
	escZero = 0xFF // 0x00 0xFF: a literal 0x00 inside a field
	escEnd  = 0x01 // 0x00 0x01: end of field
)

var errBadTuple = errors.New("malformed key")

func appendField(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == escByte {
			b = append(b, escByte, escZero)
			continue
		}
		b = append(b, s[i])
	}
	return append(b, escByte, escEnd)
}

func encodeTuple(fields ...string) []byte {
	n := 0
	for _, f := range fields {
		n += len(f) + 2
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = appendField(b, f)
	}
	return b
}

// decodeTuple is the strict inverse of encodeTuple: it accepts exactly the
// byte strings encodeTuple can produce.
func decodeTuple(b []byte) ([]string, error) {
	var fields []string
	var cur []byte
	for i := 0; i < len(b); i++ {
		if b[i] != escByte {
			cur = append(cur, b[i])
			continue
		}
		if i+1 >= len(b) {
			return nil, errBadTuple
		}
		i++
		switch b[i] {
		case escZero:
			cur = append(cur, escByte)
		case escEnd:
			fields = append(fields, string(cur))
			cur = cur[:0]
		default:
			return nil, errBadTuple
		}
	}
	if len(cur) != 0 || len(b) == 0 {
		return nil, errBadTuple // unterminated last field, or nothing at all
	}
	return fields, nil
}

// attKey is the key of an attachment inside its network's bucket; the
// network itself is the bucket name.
func attKey(k Key) []byte { return encodeTuple(k.ContainerID, k.IfName) }

func decodeAttKey(network string, b []byte) (Key, error) {
	f, err := decodeTuple(b)
	if err != nil || len(f) != 2 {
		return Key{}, errBadTuple
	}
	return Key{Network: network, ContainerID: f[0], IfName: f[1]}, nil
}

// cursorKey names the round-robin cursor of one pool of one zone.
func cursorKey(zone string, subnet netip.Prefix) []byte {
	return encodeTuple(zone, subnet.Masked().String())
}

// ipKey is a family byte followed by the address in network byte order, so
// the index sorts numerically within a family and the families never mix.
func ipKey(a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return []byte{4, v[0], v[1], v[2], v[3]}
	}
	v := a.As16()
	return append([]byte{6}, v[:]...)
}

func decodeIPKey(b []byte) (netip.Addr, bool) {
	switch {
	case len(b) == 5 && b[0] == 4:
		return netip.AddrFrom4([4]byte(b[1:])), true
	case len(b) == 17 && b[0] == 6:
		return netip.AddrFrom16([16]byte(b[1:])), true
	}
	return netip.Addr{}, false
}
