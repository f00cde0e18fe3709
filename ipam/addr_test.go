package ipam

import (
	"math"
	"net/netip"
	"testing"
)

func TestLastAddr(t *testing.T) {
	tests := []struct{ prefix, want string }{
		{"10.0.1.0/24", "10.0.1.255"},
		{"10.0.0.0/30", "10.0.0.3"},
		{"10.0.0.7/32", "10.0.0.7"},
		{"0.0.0.0/0", "255.255.255.255"},
		{"fd00:0:3::/64", "fd00:0:3:0:ffff:ffff:ffff:ffff"},
		{"fd00::/126", "fd00::3"},
		{"fd00::/8", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"fd00::5/128", "fd00::5"},
		{"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	}
	for _, tt := range tests {
		if got := lastAddr(netip.MustParsePrefix(tt.prefix)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("lastAddr(%s) = %s, want %s", tt.prefix, got, tt.want)
		}
	}
}

func TestSpanSize(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	tests := []struct {
		name string
		pool Pool
		want uint64
	}{
		{"ipv4 /24 whole range", Pool{Subnet: p("10.0.1.0/24"), Gateway: a("10.0.1.1"), Start: a("10.0.1.0"), End: a("10.0.1.255")}, 253},
		{"excluded counted once, outside ignored", Pool{Subnet: p("10.0.1.0/24"), Gateway: a("10.0.1.1"), Start: a("10.0.1.10"), End: a("10.0.1.19"),
			Exclude: []netip.Addr{a("10.0.1.12"), a("10.0.1.12"), a("10.0.1.50")}}, 9},
		{"ipv4 /30", Pool{Subnet: p("10.0.0.0/30"), Gateway: a("10.0.0.1"), Start: a("10.0.0.0"), End: a("10.0.0.3")}, 1},
		{"ipv4 /31 has nothing", Pool{Subnet: p("10.0.0.0/31"), Start: a("10.0.0.0"), End: a("10.0.0.1")}, 0},
		{"ipv6 /126 keeps last address", Pool{Subnet: p("fd00::/126"), Start: a("fd00::"), End: a("fd00::3")}, 3},
		{"ipv6 /64", Pool{Subnet: p("fd00::/64"), Gateway: a("fd00::1"), Start: a("fd00::1"), End: a("fd00::ffff:ffff:ffff:ffff")}, math.MaxUint64 - 1},
		{"ipv6 /63 saturates", Pool{Subnet: p("fd00::/63"), Start: a("fd00::"), End: a("fd00::1:ffff:ffff:ffff:ffff")}, math.MaxUint64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newSpan(tt.pool)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.size(); got != tt.want {
				t.Errorf("size = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNewSpanRejects(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	for name, pool := range map[string]Pool{
		"no subnet":         {Start: a("10.0.0.1"), End: a("10.0.0.2")},
		"no range":          {Subnet: p("10.0.0.0/24")},
		"range outside":     {Subnet: p("10.0.0.0/24"), Start: a("10.0.0.1"), End: a("10.0.1.2")},
		"range reversed":    {Subnet: p("10.0.0.0/24"), Start: a("10.0.0.9"), End: a("10.0.0.2")},
		"family mismatched": {Subnet: p("10.0.0.0/24"), Start: a("fd00::1"), End: a("fd00::2")},
	} {
		if _, err := newSpan(pool); err == nil {
			t.Errorf("%s: newSpan accepted %+v", name, pool)
		}
	}
}
