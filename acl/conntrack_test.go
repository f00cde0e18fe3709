package acl_test

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
	"github.com/zonenet/zonenet/conf"
)

const ctPolicy = `
version: 1
defaults: {intraZone: allow, interZone: deny, toExternal: deny, fromExternal: deny, toHost: deny, fromHost: allow}
rules:
  - name: api
    source: frontend
    destination: {zone: backend, ports: [8080]}
    protocol: tcp
  - name: web-in
    source: external
    destination: {zone: frontend, ports: [80]}
    protocol: tcp
  - name: dns
    source: [frontend, backend, mgmt]
    destination: {host: true, ports: [53]}
    protocol: udp
  - name: diameter
    source: frontend
    destination: {zone: backend, ports: [3868]}
    protocol: sctp
  - name: ping
    source: mgmt
    destination: backend
    protocol: icmp
  - name: mgmt-out
    source: mgmt
    destination: external
    protocol: all
`

// ctZones: frontend, backend and a dual-stack mgmt zone.
func ctZones() []conf.Zone {
	z := func(name, subnet, gw string) conf.Zone {
		return conf.Zone{Name: name, Subnet: netip.MustParsePrefix(subnet), Gateway: netip.MustParseAddr(gw)}
	}
	mgmt := z("mgmt", "10.0.3.0/24", "10.0.3.1")
	mgmt.Subnet6 = netip.MustParsePrefix("fd00:0:3::/64")
	mgmt.Gateway6 = netip.MustParseAddr("fd00:0:3::1")
	return []conf.Zone{z("frontend", "10.0.1.0/24", "10.0.1.1"), z("backend", "10.0.2.0/24", "10.0.2.1"), mgmt}
}

func ctParse(t *testing.T, doc string, zones []conf.Zone) *conf.Policy {
	t.Helper()
	p, _, err := conf.ParsePolicy([]byte(doc), zones)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ctLocal are the host's addresses: the gateways, an uplink and its
// broadcast address.
var ctLocal = []netip.Addr{
	netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.2.1"), netip.MustParseAddr("10.0.3.1"),
	netip.MustParseAddr("fd00:0:3::1"), netip.MustParseAddr("192.168.0.5"), netip.MustParseAddr("192.168.0.255"),
}

const (
	tcp  = unix.IPPROTO_TCP
	udp  = unix.IPPROTO_UDP
	sctp = unix.IPPROTO_SCTP
	icmp = unix.IPPROTO_ICMP
	gre  = unix.IPPROTO_GRE
)

type ctCase struct {
	name                         string
	proto                        uint8
	src, dst, replySrc, replyDst string
	forbidden                    bool
}

// plain is a case without NAT: the replies come back from dst to src.
func plain(name string, proto uint8, src, dst string, forbidden bool) ctCase {
	return ctCase{name, proto, src, dst, dst, src, forbidden}
}

var ctCases = []ctCase{
	plain("zone to zone on an allowed port", tcp, "10.0.1.5:40000", "10.0.2.5:8080", false),
	plain("zone to zone on another port", tcp, "10.0.1.5:40001", "10.0.2.5:9090", true),
	plain("reverse of an allowed pair", tcp, "10.0.2.5:40000", "10.0.1.5:8080", true),
	plain("inside a zone", tcp, "10.0.2.5:40000", "10.0.2.6:5432", false),
	// A published port: judged on the container and its port, which the
	// reply tuple's source holds, not on the host's address.
	{"published port to an allowed container port", tcp, "203.0.113.7:40000", "192.168.0.5:8000", "10.0.1.5:80", "203.0.113.7:40000", false},
	{"published port to a forbidden container port", tcp, "203.0.113.7:40001", "192.168.0.5:8001", "10.0.1.5:81", "203.0.113.7:40001", true},
	// A service address inside a zone, DNATed to another port: the
	// original port would give the opposite verdict.
	{"DNAT from an allowed port to a forbidden one", tcp, "10.0.1.5:40002", "10.0.2.99:8080", "10.0.2.5:9090", "10.0.1.5:40002", true},
	{"DNAT from a forbidden port to an allowed one", tcp, "10.0.1.5:40003", "10.0.2.99:9090", "10.0.2.5:8080", "10.0.1.5:40003", false},
	// Masqueraded egress: the source is the container, before SNAT.
	{"masqueraded egress, forbidden", tcp, "10.0.1.5:40004", "198.51.100.1:443", "198.51.100.1:443", "192.168.0.5:40004", true},
	{"masqueraded egress, allowed", tcp, "10.0.3.5:40004", "198.51.100.1:443", "198.51.100.1:443", "192.168.0.5:40004", false},
	plain("host to a container", tcp, "10.0.1.1:40005", "10.0.1.5:22", false),
	plain("host, by its uplink address, to a container", tcp, "192.168.0.5:40005", "10.0.2.5:22", false),
	// The uplink address is the host: a zone's DNS query to it is allowed
	// by the host rule, though external would be denied.
	plain("zone to the host's uplink address, allowed", udp, "10.0.1.5:5353", "192.168.0.5:53", false),
	plain("zone to the host's uplink address, forbidden", tcp, "10.0.1.5:40006", "192.168.0.5:22", true),
	plain("zone to a gateway", udp, "10.0.2.5:5353", "10.0.2.1:53", false),
	plain("zone to multicast is to the host", udp, "10.0.1.5:5353", "224.0.0.251:5353", true),
	plain("zone to the uplink broadcast is to the host", udp, "10.0.1.5:68", "192.168.0.255:67", true),
	plain("neither side in a zone", tcp, "203.0.113.7:40000", "198.51.100.1:80", false),
	plain("host to the outside", tcp, "192.168.0.5:40000", "198.51.100.1:80", false),
	plain("icmp allowed", icmp, "10.0.3.5:0", "10.0.2.5:0", false),
	plain("icmp forbidden", icmp, "10.0.1.5:0", "10.0.2.5:0", true),
	// SCTP ports are not decoded: kept while some port pair is allowed.
	plain("sctp that may be allowed", sctp, "10.0.1.5:3868", "10.0.2.5:3868", false),
	plain("sctp forbidden on every port", sctp, "10.0.2.5:3868", "10.0.1.5:3868", true),
	plain("other protocol under an all rule", gre, "10.0.3.5:0", "198.51.100.1:0", false),
	plain("other protocol without a rule", gre, "10.0.1.5:0", "198.51.100.1:0", true),
	plain("IPv6 egress allowed", tcp, "[fd00:0:3::5]:40000", "[2001:db8::1]:443", false),
	plain("IPv6 ingress forbidden", tcp, "[2001:db8::1]:40000", "[fd00:0:3::5]:22", true),
	plain("IPv6 inside a zone", udp, "[fd00:0:3::5]:40000", "[fd00:0:3::6]:9999", false),
	plain("IPv6 host to a container", tcp, "[fd00:0:3::1]:40000", "[fd00:0:3::6]:22", false),
}

func TestForbiddenFilter(t *testing.T) {
	m := acl.NewForbiddenFilter(ctParse(t, ctPolicy, ctZones()), ctLocal)
	for _, c := range ctCases {
		e := acltest.Entry(c.proto, c.src, c.dst, c.replySrc, c.replyDst)
		if got := m.MatchConntrackFlow(e); got != c.forbidden {
			t.Errorf("%s: %d %s -> %s (replies from %s to %s): forbidden=%v, want %v",
				c.name, c.proto, c.src, c.dst, c.replySrc, c.replyDst, got, c.forbidden)
		}
	}
}

// Without NAT the filter is exactly the negation of Allows on TCP and UDP.
func TestForbiddenFilterIsAllows(t *testing.T) {
	p := ctParse(t, ctPolicy, ctZones())
	m := acl.NewForbiddenFilter(p, ctLocal)
	isLocal := func(a netip.Addr) bool { return slices.Contains(ctLocal, a) }
	addrs := []string{"10.0.1.5", "10.0.2.5", "10.0.3.5", "10.0.1.1", "10.0.2.1", "192.168.0.5", "198.51.100.1"}
	ports := []uint16{53, 79, 80, 81, 3868, 8079, 8080, 8081, 40000}
	for _, proto := range []uint8{tcp, udp} {
		for _, s := range addrs {
			for _, d := range addrs {
				for _, port := range ports {
					src := netip.AddrPortFrom(netip.MustParseAddr(s), 40000).String()
					dst := netip.AddrPortFrom(netip.MustParseAddr(d), port).String()
					sa, da := netip.MustParseAddr(s), netip.MustParseAddr(d)
					pr := conf.ProtoTCP
					if proto == udp {
						pr = conf.ProtoUDP
					}
					want, by := p.Allows(conf.Flow{Src: sa, Dst: da, SrcHost: isLocal(sa), DstHost: isLocal(da), Proto: pr, SrcPort: 40000, DstPort: port})
					if got := m.MatchConntrackFlow(acltest.Entry(proto, src, dst, dst, src)); got == want {
						t.Errorf("%d %s -> %s: filter says forbidden=%v, Allows says allowed=%v (%s)", proto, src, dst, got, want, by)
					}
				}
			}
		}
	}
}

func TestFlushForbidden(t *testing.T) {
	p := ctParse(t, ctPolicy, ctZones())
	ct := &acltest.Conntrack{Local: ctLocal}
	want := map[string]bool{}
	for _, c := range ctCases {
		e := acltest.Entry(c.proto, c.src, c.dst, c.replySrc, c.replyDst)
		ct.Entries = append(ct.Entries, e)
		if !c.forbidden {
			want[e.String()] = true
		}
	}
	n, err := acl.FlushForbidden(ct, p)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ctCases)-len(want) {
		t.Errorf("deleted %d entries, want %d", n, len(ctCases)-len(want))
	}
	for _, e := range ct.Entries {
		if !want[e.String()] {
			t.Errorf("entry of a forbidden connection left: %s", e)
		}
		delete(want, e.String())
	}
	for e := range want {
		t.Errorf("entry of an allowed connection deleted: %s", e)
	}
	if n, err := acl.FlushForbidden(ct, p); n != 0 || err != nil {
		t.Errorf("second flush: deleted %d, %v; want nothing left to delete", n, err)
	}
}

// A family no zone uses is not dumped: nothing in it touches a zone.
func TestFlushForbiddenSkipsUnusedFamily(t *testing.T) {
	zones := ctZones()[:2]
	p := ctParse(t, "version: 1\n", zones)
	ct := &acltest.Conntrack{}
	ct.Entries = append(ct.Entries,
		acltest.Entry(tcp, "10.0.1.5:40000", "10.0.2.5:8080", "10.0.2.5:8080", "10.0.1.5:40000"),
		acltest.Entry(tcp, "[2001:db8::1]:40000", "[2001:db8::2]:22", "[2001:db8::2]:22", "[2001:db8::1]:40000"))
	n, err := acl.FlushForbidden(ct, p)
	if err != nil || n != 1 || ct.Dumps != 1 || len(ct.Entries) != 1 {
		t.Errorf("IPv4-only policy: deleted %d (%v) in %d dumps, %d entries left; want 1 deleted in 1 dump, the IPv6 one left",
			n, err, ct.Dumps, len(ct.Entries))
	}
	if n, err := acl.FlushForbidden(ct, nil); n != 0 || err != nil {
		t.Errorf("nil policy: deleted %d, %v", n, err)
	}
}
