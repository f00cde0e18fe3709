package cluster

import (
	"net/netip"
	"strings"
	"testing"
)

func TestKeysRoundTrip(t *testing.T) {
	k := keys{prefix: DefaultPrefix}
	p4, p6 := netip.MustParsePrefix("10.0.1.64/26"), netip.MustParsePrefix("fd00:0:3::100/120")
	for _, c := range []struct {
		key  string
		want parsedKey
	}{
		{k.node("node-1.example"), parsedKey{kind: kindNode, name: "node-1.example"}},
		{k.gone("n_2"), parsedKey{kind: kindGone, name: "n_2"}},
		{k.policy("prod"), parsedKey{kind: kindPolicy, network: "prod"}},
		{k.block("prod", p4), parsedKey{kind: kindBlock, network: "prod", prefix: p4}},
		{k.block("prod", p6), parsedKey{kind: kindBlock, network: "prod", prefix: p6}},
		{k.subnet("prod", netip.MustParsePrefix("10.0.1.0/24")), parsedKey{kind: kindSubnet, network: "prod", prefix: netip.MustParsePrefix("10.0.1.0/24")}},
	} {
		got, ok := k.parse(c.key)
		if !ok || got != c.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v", c.key, got, ok, c.want)
		}
	}
	if got := k.block("prod", p4); got != "/zonenet/blocks/prod/10.0.1.64/26" {
		t.Errorf("block key %q", got)
	}
}

func TestKeysRejected(t *testing.T) {
	k := keys{prefix: "/zonenet/"}
	for _, key := range []string{
		"/other/nodes/n1",
		"/zonenet/nodes/",
		"/zonenet/nodes/a/b",
		"/zonenet/nodes/..",
		"/zonenet/policy/",
		"/zonenet/blocks/prod",
		"/zonenet/blocks/prod/10.0.1.64",
		"/zonenet/blocks/prod/10.0.1.65/26",        // host bits
		"/zonenet/blocks/prod/010.0.1.64/26",       // not canonical
		"/zonenet/blocks/prod/::ffff:10.0.1.0/120", // mapped
		"/zonenet/blocks/prod/FD00::/120",          // not canonical
		"/zonenet/blocks/p d/10.0.1.64/26",
		"/zonenet/unknown/x",
	} {
		if got, ok := k.parse(key); ok {
			t.Errorf("parse(%q) = %+v, want rejected", key, got)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "node-1.example.com", "prod_2", strings.Repeat("x", 253)} {
		if err := checkName(ok); err != nil {
			t.Errorf("checkName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a b", "é", strings.Repeat("x", 254), "a\x00"} {
		if checkName(bad) == nil {
			t.Errorf("checkName(%q) accepted", bad)
		}
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestFirstFree(t *testing.T) {
	for _, c := range []struct {
		subnet string
		bits   int
		taken  []string
		want   string // "" = full
	}{
		{"10.0.0.0/24", 26, nil, "10.0.0.0/26"},
		{"10.0.0.0/24", 26, []string{"10.0.0.0/26"}, "10.0.0.64/26"},
		{"10.0.0.0/24", 26, []string{"10.0.0.64/26", "10.0.0.0/26"}, "10.0.0.128/26"},
		{"10.0.0.0/24", 26, []string{"10.0.0.0/26", "10.0.0.128/26"}, "10.0.0.64/26"},
		{"10.0.0.0/24", 26, []string{"10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26", "10.0.0.192/26"}, ""},
		{"10.0.0.0/24", 24, []string{"10.0.0.0/24"}, ""},
		{"10.0.0.0/24", 24, nil, "10.0.0.0/24"},
		// Prefixes of other sizes, outside the subnet or of the other
		// family are handled too.
		{"10.0.0.0/24", 26, []string{"10.0.0.0/25"}, "10.0.0.128/26"},
		{"10.0.0.0/24", 26, []string{"10.0.0.8/29"}, "10.0.0.64/26"},
		{"10.0.0.0/24", 26, []string{"10.0.1.0/26", "fd00::/120", "9.0.0.0/8"}, "10.0.0.0/26"},
		{"10.0.0.0/24", 26, []string{"10.0.0.0/16"}, ""},
		{"255.255.255.0/24", 25, []string{"255.255.255.0/25"}, "255.255.255.128/25"},
		{"255.255.255.0/24", 25, []string{"255.255.255.0/25", "255.255.255.128/25"}, ""},
		// IPv6: a /64 of /120 blocks is never enumerated.
		{"fd00:0:3::/64", 120, []string{"fd00:0:3::/120", "fd00:0:3::100/120"}, "fd00:0:3::200/120"},
		{"fd00:0:3::/64", 120, []string{"fd00:0:3::/65"}, "fd00:0:3:0:8000::/120"},
		{"fd00:0:3::/64", 120, []string{"fd00:0:3::/64"}, ""},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", 120, []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"}, ""},
	} {
		var taken []netip.Prefix
		for _, s := range c.taken {
			taken = append(taken, pfx(s))
		}
		got, ok := firstFree(pfx(c.subnet), c.bits, taken)
		if c.want == "" {
			if ok {
				t.Errorf("firstFree(%s /%d, %v) = %s, want full", c.subnet, c.bits, c.taken, got)
			}
			continue
		}
		if !ok || got != pfx(c.want) {
			t.Errorf("firstFree(%s /%d, %v) = %s, %v; want %s", c.subnet, c.bits, c.taken, got, ok, c.want)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/26":     "10.0.0.63",
		"10.0.0.64/26":    "10.0.0.127",
		"0.0.0.0/0":       "255.255.255.255",
		"10.1.2.3/32":     "10.1.2.3",
		"fd00::/120":      "fd00::ff",
		"fd00::/64":       "fd00::ffff:ffff:ffff:ffff",
		"10.0.0.0/21":     "10.0.7.255",
		"fd00:0:3::/52":   "fd00:0:3:fff:ffff:ffff:ffff:ffff",
		"192.168.1.77/20": "192.168.15.255",
	} {
		if got := lastAddr(pfx(in)); got != netip.MustParseAddr(want) {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

// FuzzParseKey checks that parse never panics and that whatever it accepts
// is the one key it would build for the same thing.
func FuzzParseKey(f *testing.F) {
	k := keys{prefix: DefaultPrefix}
	for _, s := range []string{
		k.node("n1"), k.gone("n1"), k.policy("prod"), k.block("prod", pfx("10.0.1.64/26")),
		k.subnet("prod", pfx("fd00::/64")), "/zonenet/blocks/prod/1.2.3.4/33", "/zonenet/blocks//",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		p, ok := k.parse(key)
		if !ok {
			return
		}
		var back string
		switch p.kind {
		case kindNode:
			back = k.node(p.name)
		case kindGone:
			back = k.gone(p.name)
		case kindPolicy:
			back = k.policy(p.network)
		case kindBlock:
			back = k.block(p.network, p.prefix)
		case kindSubnet:
			back = k.subnet(p.network, p.prefix)
		}
		if back != key {
			t.Fatalf("parse(%q) = %+v, which builds %q", key, p, back)
		}
	})
}
