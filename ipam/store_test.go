package ipam_test

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/ipam"
)

const network = "prod"

var created = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = addr(s)
	}
	return out
}

// pool builds a pool; gw "" means no gateway.
func pool(subnet, gw, start, end string, exclude ...string) ipam.Pool {
	p := ipam.Pool{Subnet: netip.MustParsePrefix(subnet), Start: addr(start), End: addr(end), Exclude: addrs(exclude...)}
	if gw != "" {
		p.Gateway = addr(gw)
	}
	return p
}

func frontend() ipam.Pool { return pool("10.0.1.0/24", "10.0.1.1", "10.0.1.1", "10.0.1.254") }

func openStore(t testing.TB) (*ipam.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "zonenet.db")
	s, err := ipam.Open(path, 5*time.Second)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, path
}

func request(cid, zone string, pools ...ipam.Pool) ipam.Request {
	return ipam.Request{
		Attachment: ipam.Attachment{
			Key:     ipam.Key{Network: network, ContainerID: cid, IfName: "eth0"},
			Zone:    zone,
			Mode:    "bridge",
			Created: created,
		},
		Pools: pools,
	}
}

func key(cid string) ipam.Key { return ipam.Key{Network: network, ContainerID: cid, IfName: "eth0"} }

func ipStrings(a ipam.Attachment) []string {
	out := make([]string, len(a.IPs))
	for i, p := range a.IPs {
		out[i] = p.String()
	}
	return out
}

// TestAllocateSequence drives allocations and releases against one pool and
// checks every address handed out: order, round robin, wrap-around, skipped
// addresses and exhaustion.
func TestAllocateSequence(t *testing.T) {
	type step struct {
		alloc   string // container ID to allocate for
		release string // or container ID to release
		want    string // address expected from alloc; "" = exhausted
	}
	tests := []struct {
		name  string
		pool  ipam.Pool
		steps []step
	}{
		{
			name: "in order after gateway",
			pool: frontend(),
			steps: []step{
				{alloc: "a", want: "10.0.1.2"}, {alloc: "b", want: "10.0.1.3"}, {alloc: "c", want: "10.0.1.4"},
			},
		},
		{
			name: "skips excluded and gateway in the middle",
			pool: pool("10.0.1.0/24", "10.0.1.3", "10.0.1.2", "10.0.1.254", "10.0.1.4", "10.0.1.6"),
			steps: []step{
				{alloc: "a", want: "10.0.1.2"}, {alloc: "b", want: "10.0.1.5"}, {alloc: "c", want: "10.0.1.7"},
			},
		},
		{
			name: "never network nor broadcast even if the range says so",
			pool: pool("10.0.2.0/29", "", "10.0.2.0", "10.0.2.7"),
			steps: []step{
				{alloc: "a", want: "10.0.2.1"}, {alloc: "b", want: "10.0.2.2"}, {alloc: "c", want: "10.0.2.3"},
				{alloc: "d", want: "10.0.2.4"}, {alloc: "e", want: "10.0.2.5"}, {alloc: "f", want: "10.0.2.6"},
				{alloc: "g", want: ""},
			},
		},
		{
			name: "round robin: a released address waits for the wrap",
			pool: pool("10.0.3.0/29", "10.0.3.1", "10.0.3.1", "10.0.3.6"),
			steps: []step{
				{alloc: "a", want: "10.0.3.2"}, {alloc: "b", want: "10.0.3.3"}, {release: "a"},
				{alloc: "c", want: "10.0.3.4"}, {alloc: "d", want: "10.0.3.5"}, {alloc: "e", want: "10.0.3.6"},
				{alloc: "f", want: "10.0.3.2"}, // wrapped; .3 still taken by b
				{alloc: "g", want: ""},
				{release: "d"}, {release: "b"},
				{alloc: "h", want: "10.0.3.3"}, // first free after the cursor (.2)
				{alloc: "i", want: "10.0.3.5"},
				{alloc: "j", want: ""},
			},
		},
		{
			name: "exhausted /30",
			pool: pool("10.0.0.0/30", "10.0.0.1", "10.0.0.0", "10.0.0.3"),
			steps: []step{
				{alloc: "a", want: "10.0.0.2"}, {alloc: "b", want: ""}, {release: "a"}, {alloc: "c", want: "10.0.0.2"},
			},
		},
		{
			name: "tiny range of one",
			pool: pool("10.0.4.0/24", "10.0.4.1", "10.0.4.10", "10.0.4.10"),
			steps: []step{
				{alloc: "a", want: "10.0.4.10"}, {alloc: "b", want: ""}, {alloc: "c", want: ""},
			},
		},
		{
			name:  "range of only reserved addresses",
			pool:  pool("10.0.5.0/24", "10.0.5.1", "10.0.5.1", "10.0.5.2", "10.0.5.2"),
			steps: []step{{alloc: "a", want: ""}},
		},
		{
			name: "ipv6 /126 hands out the last address",
			pool: pool("fd00::/126", "fd00::1", "fd00::", "fd00::3"),
			steps: []step{
				{alloc: "a", want: "fd00::2"}, {alloc: "b", want: "fd00::3"}, {alloc: "c", want: ""},
				{release: "a"}, {alloc: "d", want: "fd00::2"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openStore(t)
			for i, st := range tt.steps {
				if st.release != "" {
					if _, found, err := s.Release(key(st.release)); err != nil || !found {
						t.Fatalf("step %d: release %s = found %v, %v", i, st.release, found, err)
					}
					continue
				}
				a, err := s.Allocate(request(st.alloc, "frontend", tt.pool))
				if st.want == "" {
					if !errors.Is(err, ipam.ErrExhausted) {
						t.Fatalf("step %d: allocate %s = %v, %v; want ErrExhausted", i, st.alloc, a.IPs, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: allocate %s: %v", i, st.alloc, err)
				}
				want := []netip.Prefix{netip.PrefixFrom(addr(st.want), tt.pool.Subnet.Bits())}
				if !slices.Equal(a.IPs, want) {
					t.Fatalf("step %d: allocate %s = %v, want %v", i, st.alloc, a.IPs, want)
				}
			}
		})
	}
}

func TestExhaustedError(t *testing.T) {
	s, _ := openStore(t)
	p := pool("10.0.1.0/30", "10.0.1.1", "10.0.1.2", "10.0.1.2")
	if _, err := s.Allocate(request("a", "frontend", p)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Allocate(request("b", "frontend", p))
	var ex *ipam.ExhaustedError
	if !errors.As(err, &ex) || !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("err = %v, want ExhaustedError", err)
	}
	want := "zone frontend (10.0.1.0/30) of network prod has no free address in 10.0.1.2-10.0.1.2"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to contain %q", err, want)
	}
	if ex.Network != network || ex.Zone != "frontend" || ex.Subnet != p.Subnet {
		t.Errorf("ExhaustedError = %+v", ex)
	}
	if _, found, _ := s.Get(key("b")); found {
		t.Error("failed allocation left a record")
	}
}

func TestStatic(t *testing.T) {
	s, _ := openStore(t)
	p := pool("10.0.1.0/24", "10.0.1.1", "10.0.1.10", "10.0.1.200", "10.0.1.50")
	req := request("a", "frontend", p)
	req.Static = addrs("10.0.1.100")
	a, err := s.Allocate(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := ipStrings(a); !slices.Equal(got, []string{"10.0.1.100/24"}) {
		t.Fatalf("static allocation = %v", got)
	}
	// A static address does not move the dynamic cursor.
	b, err := s.Allocate(request("b", "frontend", p))
	if err != nil {
		t.Fatal(err)
	}
	if got := ipStrings(b); !slices.Equal(got, []string{"10.0.1.10/24"}) {
		t.Fatalf("dynamic after static = %v", got)
	}
	// An IPv4-mapped IPv6 form names the same address.
	req = request("c", "frontend", p)
	req.Static = addrs("::ffff:10.0.1.101")
	if c, err := s.Allocate(req); err != nil || !slices.Equal(ipStrings(c), []string{"10.0.1.101/24"}) {
		t.Fatalf("mapped static = %v, %v", c.IPs, err)
	}
}

func TestStaticErrors(t *testing.T) {
	v4 := pool("10.0.1.0/24", "10.0.1.1", "10.0.1.10", "10.0.1.200", "10.0.1.50")
	v6 := pool("fd00:0:1::/64", "fd00:0:1::1", "fd00:0:1::2", "fd00:0:1::ffff")
	tests := []struct {
		name   string
		pools  []ipam.Pool
		static []string
		ip     string // StaticError.IP
		reason string // part of the message
	}{
		{"outside every pool", []ipam.Pool{v4}, []string{"10.0.9.9"}, "10.0.9.9", "not in any subnet"},
		{"other family than the zone", []ipam.Pool{v4}, []string{"fd00:0:1::5"}, "fd00:0:1::5", "not in any subnet"},
		{"gateway", []ipam.Pool{v4}, []string{"10.0.1.1"}, "10.0.1.1", "gateway"},
		{"excluded", []ipam.Pool{v4}, []string{"10.0.1.50"}, "10.0.1.50", "excluded"},
		{"network address", []ipam.Pool{pool("10.0.1.0/24", "", "10.0.1.0", "10.0.1.255")}, []string{"10.0.1.0"}, "10.0.1.0", "network address"},
		{"broadcast address", []ipam.Pool{pool("10.0.1.0/24", "", "10.0.1.0", "10.0.1.255")}, []string{"10.0.1.255"}, "10.0.1.255", "broadcast address"},
		{"below the range", []ipam.Pool{v4}, []string{"10.0.1.5"}, "10.0.1.5", "outside the zone's range 10.0.1.10-10.0.1.200"},
		{"above the range", []ipam.Pool{v4}, []string{"10.0.1.201"}, "10.0.1.201", "outside the zone's range"},
		{"leased to another container", []ipam.Pool{v4}, []string{"10.0.1.10"}, "10.0.1.10", "already leased to container holder interface eth0"},
		{"two of one family", []ipam.Pool{v4, v6}, []string{"10.0.1.20", "10.0.1.21"}, "10.0.1.21", "second address of its family"},
		{"ipv6 outside range", []ipam.Pool{v4, v6}, []string{"fd00:0:1::1:0"}, "fd00:0:1::1:0", "outside the zone's range"},
		{"invalid address", []ipam.Pool{v4}, nil, "invalid IP", "not a valid address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openStore(t)
			if _, err := s.Allocate(request("holder", "frontend", tt.pools...)); err != nil {
				t.Fatal(err) // takes 10.0.1.10 (and fd00:0:1::2)
			}
			req := request("a", "frontend", tt.pools...)
			req.Static = addrs(tt.static...)
			if tt.static == nil {
				req.Static = []netip.Addr{{}}
			}
			_, err := s.Allocate(req)
			var se *ipam.StaticError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want StaticError", err)
			}
			if se.IP.String() != tt.ip || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("err = %q (IP %s), want IP %s and %q", err, se.IP, tt.ip, tt.reason)
			}
			if _, found, _ := s.Get(key("a")); found {
				t.Error("rejected allocation left a record")
			}
			if us, err := s.Usage(network, ipam.Zone{Name: "frontend", Pools: tt.pools}); err != nil || us[0].Used != 1 {
				t.Errorf("usage after rejection = %+v, %v; want 1 used", us, err)
			}
		})
	}
}

func TestAllocateIdempotent(t *testing.T) {
	s, _ := openStore(t)
	first, err := s.Allocate(request("a", "frontend", frontend()))
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*ipam.Request){
		"same request":       func(*ipam.Request) {},
		"other static":       func(r *ipam.Request) { r.Static = addrs("10.0.1.77") },
		"other fields":       func(r *ipam.Request) { r.HostVeth, r.Zone = "other", "backend" },
		"static now invalid": func(r *ipam.Request) { r.Static = addrs("10.9.9.9") },
		"pools now invalid":  func(r *ipam.Request) { r.Pools = []ipam.Pool{{}} },
	} {
		retry := request("a", "frontend", frontend())
		change(&retry)
		again, err := s.Allocate(retry)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(first, again) {
			t.Fatalf("%s: retry = %+v, want the first record %+v", name, again, first)
		}
	}
	if l, _ := s.List(network); len(l) != 1 {
		t.Fatalf("List has %d attachments, want 1", len(l))
	}
	if _, found, _ := s.Owner(network, addr("10.0.1.77")); found {
		t.Error("retry leased its static address")
	}
}

func TestRelease(t *testing.T) {
	s, _ := openStore(t)
	a, err := s.Allocate(request("a", "frontend", frontend()))
	if err != nil {
		t.Fatal(err)
	}
	ip := a.IPs[0].Addr()
	if k, found, err := s.Owner(network, ip); err != nil || !found || k != key("a") {
		t.Fatalf("Owner(%s) = %v, %v, %v", ip, k, found, err)
	}
	got, found, err := s.Release(key("a"))
	if err != nil || !found || !reflect.DeepEqual(got, a) {
		t.Fatalf("Release = %+v, %v, %v; want %+v", got, found, err, a)
	}
	if _, found, _ := s.Owner(network, ip); found {
		t.Error("released address still has an owner")
	}
	if _, found, _ := s.Get(key("a")); found {
		t.Error("released attachment still stored")
	}
	// The freed address can be taken again.
	req := request("b", "frontend", frontend())
	req.Static = []netip.Addr{ip}
	if _, err := s.Allocate(req); err != nil {
		t.Fatalf("reuse of released %s: %v", ip, err)
	}

	for _, k := range []ipam.Key{key("a"), key("never"), {Network: "other", ContainerID: "x", IfName: "eth0"}} {
		if _, found, err := s.Release(k); err != nil || found {
			t.Errorf("Release(%v) of missing = found %v, %v; want false, nil", k, found, err)
		}
	}
}

func TestDualStack(t *testing.T) {
	s, _ := openStore(t)
	v4 := pool("10.0.3.0/24", "10.0.3.1", "10.0.3.1", "10.0.3.254")
	v6 := pool("fd00:0:3::/64", "fd00:0:3::1", "fd00:0:3::1", "fd00:0:3::ffff:ffff:ffff:ffff")
	a, err := s.Allocate(request("a", "mgmt", v4, v6))
	if err != nil {
		t.Fatal(err)
	}
	if got := ipStrings(a); !slices.Equal(got, []string{"10.0.3.2/24", "fd00:0:3::2/64"}) {
		t.Fatalf("dual stack = %v", got)
	}
	// A static IPv6 address leaves IPv4 dynamic.
	req := request("b", "mgmt", v4, v6)
	req.Static = addrs("fd00:0:3::abcd")
	b, err := s.Allocate(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := ipStrings(b); !slices.Equal(got, []string{"10.0.3.3/24", "fd00:0:3::abcd/64"}) {
		t.Fatalf("dual stack with static v6 = %v", got)
	}
	// One exhausted family fails the whole allocation: no v6 lease is left.
	tiny := pool("10.0.4.0/30", "10.0.4.1", "10.0.4.1", "10.0.4.2")
	if _, err := s.Allocate(request("c", "tiny", tiny, v6)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(request("d", "tiny", tiny, v6)); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("err = %v, want ErrExhausted", err)
	}
	us, err := s.Usage(network, ipam.Zone{Name: "mgmt", Pools: []ipam.Pool{v4, v6}})
	if err != nil {
		t.Fatal(err)
	}
	if us[1].Used != 3 {
		t.Errorf("v6 used = %d, want 3 (a, b, c)", us[1].Used)
	}
}

func TestIPv6LargeRange(t *testing.T) {
	s, _ := openStore(t)
	// A /64 whose range starts near its top: allocation wraps to Start
	// without ever walking the 2^64 addresses in between.
	p := pool("fd00:0:6::/64", "", "fd00:0:6::1", "fd00:0:6::ffff:ffff:ffff:ffff")
	req := request("top", "v6", p)
	req.Static = addrs("fd00:0:6::ffff:ffff:ffff:fffe")
	if _, err := s.Allocate(req); err != nil {
		t.Fatal(err)
	}
	want := []string{"fd00:0:6::1/64", "fd00:0:6::2/64", "fd00:0:6::3/64"}
	for i, w := range want {
		a, err := s.Allocate(request(fmt.Sprint("c", i), "v6", p))
		if err != nil {
			t.Fatal(err)
		}
		if got := ipStrings(a); !slices.Equal(got, []string{w}) {
			t.Fatalf("allocation %d = %v, want %s", i, got, w)
		}
	}
	us, err := s.Usage(network, ipam.Zone{Name: "v6", Pools: []ipam.Pool{p}})
	if err != nil {
		t.Fatal(err)
	}
	if us[0].Size != math.MaxUint64 || us[0].Used != 4 {
		t.Errorf("usage = %+v, want size MaxUint64, used 4", us[0])
	}
}

func TestUsage(t *testing.T) {
	s, _ := openStore(t)
	v4 := pool("10.0.2.0/24", "10.0.2.1", "10.0.2.10", "10.0.2.200", "10.0.2.50", "10.0.2.51")
	v6 := pool("fd00:0:2::/120", "fd00:0:2::1", "fd00:0:2::", "fd00:0:2::ff")
	z := ipam.Zone{Name: "backend", Pools: []ipam.Pool{v4, v6}}
	for i := range 3 {
		if _, err := s.Allocate(request(fmt.Sprint("c", i), z.Name, z.Pools...)); err != nil {
			t.Fatal(err)
		}
	}
	// A delegated address outside the range is not part of the pool's use.
	if err := s.Put(ipam.Attachment{Key: key("d"), Delegated: "host-local", IPs: []netip.Prefix{netip.MustParsePrefix("10.0.2.5/24")}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Usage(network, z)
	if err != nil {
		t.Fatal(err)
	}
	want := []ipam.PoolUsage{
		{Subnet: v4.Subnet, Size: 191 - 2, Used: 3},
		{Subnet: v6.Subnet, Size: 255 - 1, Used: 3},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Usage = %+v, want %+v", got, want)
	}
	if got, err := s.Usage("empty", z); err != nil || got[0].Used != 0 || got[0].Size != 189 {
		t.Errorf("Usage of an unknown network = %+v, %v", got, err)
	}
}

func TestListSorted(t *testing.T) {
	s, _ := openStore(t)
	keys := []ipam.Key{
		{Network: network, ContainerID: "b", IfName: "eth0"},
		{Network: network, ContainerID: "a", IfName: "eth1"},
		{Network: network, ContainerID: "ab", IfName: "eth0"},
		{Network: network, ContainerID: "a\x00", IfName: "eth0"},
		{Network: network, ContainerID: "a", IfName: "eth0\x00x"},
		{Network: network, ContainerID: "a", IfName: "eth0"},
		{Network: network, ContainerID: "A", IfName: "net1"},
		{Network: "other", ContainerID: "0", IfName: "eth0"},
	}
	for _, k := range keys {
		req := request("", "frontend", frontend())
		req.Key = k
		if _, err := s.Allocate(req); err != nil {
			t.Fatal(err)
		}
	}
	l, err := s.List(network)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []ipam.Key
	for _, a := range l {
		got = append(got, a.Key)
	}
	for _, k := range keys {
		if k.Network == network {
			want = append(want, k)
		}
	}
	slices.SortFunc(want, func(x, y ipam.Key) int {
		if c := strings.Compare(x.ContainerID, y.ContainerID); c != 0 {
			return c
		}
		return strings.Compare(x.IfName, y.IfName)
	})
	if !slices.Equal(got, want) {
		t.Errorf("List order = %q, want %q", got, want)
	}
	if l, err := s.List("nothing"); err != nil || len(l) != 0 {
		t.Errorf("List of an unknown network = %v, %v", l, err)
	}
}
