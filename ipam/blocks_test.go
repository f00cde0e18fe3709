package ipam_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/ipam"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

func mustAddBlocks(t *testing.T, s *ipam.Store, zone string, blocks ...string) {
	t.Helper()
	for _, b := range blocks {
		if err := s.AddBlock(network, zone, pfx(b)); err != nil {
			t.Fatalf("AddBlock %s: %v", b, err)
		}
	}
}

func expectBlocks(t *testing.T, s *ipam.Store, zone string, want ...string) {
	t.Helper()
	got, err := s.Blocks(network, zone)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, pfxs(want...)) {
		t.Errorf("Blocks(%s) = %v, want %v", zone, got, want)
	}
}

// inBlocks is a cluster-mode request.
func inBlocks(cid string, pools ...ipam.Pool) ipam.Request {
	r := request(cid, "frontend", pools...)
	r.InBlocks = true
	return r
}

func TestBlocksAddListRemove(t *testing.T) {
	s, path := openStore(t)
	expectBlocks(t, s, "frontend")
	mustAddBlocks(t, s, "frontend", "fd00::40/122", "10.0.1.64/26", "10.0.1.0/26")
	mustAddBlocks(t, s, "backend", "10.0.2.0/26")
	// A zone name that is a prefix of another must not see its blocks.
	mustAddBlocks(t, s, "front", "10.0.9.0/26")
	expectBlocks(t, s, "frontend", "10.0.1.0/26", "10.0.1.64/26", "fd00::40/122")
	expectBlocks(t, s, "backend", "10.0.2.0/26")
	expectBlocks(t, s, "front", "10.0.9.0/26")
	if got, err := s.Blocks("other", "frontend"); err != nil || len(got) != 0 {
		t.Errorf("Blocks of another network = %v, %v", got, err)
	}

	// Adding a block again is a no-op; overlapping blocks are refused,
	// whatever the zone.
	mustAddBlocks(t, s, "frontend", "10.0.1.64/26")
	for _, c := range []struct{ zone, block string }{
		{"frontend", "10.0.1.64/27"}, {"frontend", "10.0.1.0/24"}, {"backend", "10.0.1.64/26"},
	} {
		if err := s.AddBlock(network, c.zone, pfx(c.block)); !errors.Is(err, ipam.ErrBlockOverlap) {
			t.Errorf("AddBlock(%s, %s) = %v, want ErrBlockOverlap", c.zone, c.block, err)
		}
	}
	for _, bad := range []netip.Prefix{{}, pfx("10.0.1.65/26"), pfx("::ffff:10.0.3.0/122")} {
		if err := s.AddBlock(network, "frontend", bad); err == nil {
			t.Errorf("AddBlock(%v) accepted", bad)
		}
	}
	if err := s.AddBlock("", "frontend", pfx("10.0.3.0/26")); err == nil {
		t.Error("AddBlock without a network accepted")
	}
	if err := s.AddBlock(network, "", pfx("10.0.3.0/26")); err == nil {
		t.Error("AddBlock without a zone accepted")
	}

	// A block with a lease stays; without one it goes. Missing is fine.
	a, err := s.Allocate(inBlocks("a", frontend()))
	if err != nil {
		t.Fatal(err)
	}
	if got := ipStrings(a); !slices.Equal(got, []string{"10.0.1.2/24"}) {
		t.Fatalf("first address in blocks = %v", got)
	}
	var inUse *ipam.BlockInUseError
	if err := s.RemoveBlock(network, "frontend", pfx("10.0.1.0/26")); !errors.As(err, &inUse) || inUse.Leases != 1 {
		t.Errorf("RemoveBlock of a block in use = %v", err)
	}
	if err := s.RemoveBlock(network, "frontend", pfx("10.0.1.64/26")); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveBlock(network, "frontend", pfx("10.0.1.64/26")); err != nil {
		t.Errorf("RemoveBlock of a missing block: %v", err)
	}
	if _, _, err := s.Release(key("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveBlock(network, "frontend", pfx("10.0.1.0/26")); err != nil {
		t.Errorf("RemoveBlock after release: %v", err)
	}

	// The blocks are in the file.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := ipam.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	expectBlocks(t, s2, "frontend", "fd00::40/122")
	expectBlocks(t, s2, "backend", "10.0.2.0/26")
}

func TestAllocateOnlyInBlocks(t *testing.T) {
	s, _ := openStore(t)
	// No block yet: ask for one. The error is not "zone exhausted".
	_, err := s.Allocate(inBlocks("a", frontend()))
	var full *ipam.BlocksFullError
	if !errors.As(err, &full) || !errors.Is(err, ipam.ErrBlocksFull) || errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("no block: err = %v, want a BlocksFullError that is not ErrExhausted", err)
	}
	if full.Subnet != pfx("10.0.1.0/24") || len(full.Blocks) != 0 || !strings.Contains(err.Error(), "no block on this node") {
		t.Errorf("BlocksFullError = %+v (%v)", full, err)
	}

	// The first block holds the zone's network address and gateway:
	// neither is handed out. An exclusion and the range still apply.
	p := pool("10.0.1.0/24", "10.0.1.1", "10.0.1.1", "10.0.1.69", "10.0.1.4", "10.0.1.66")
	mustAddBlocks(t, s, "frontend", "10.0.1.0/29")
	mustAddBlocks(t, s, "backend", "10.0.1.8/29") // another zone's block is not ours
	var got []string
	for i := 0; ; i++ {
		var a ipam.Attachment
		a, err = s.Allocate(inBlocks(string(rune('a'+i)), p))
		if err != nil {
			if !errors.As(err, &full) || !slices.Equal(full.Blocks, pfxs("10.0.1.0/29")) {
				t.Fatalf("after %v: err = %v, want the block 10.0.1.0/29 full", got, err)
			}
			break
		}
		got = append(got, ipStrings(a)...)
	}
	if want := []string{"10.0.1.2/24", "10.0.1.3/24", "10.0.1.5/24", "10.0.1.6/24", "10.0.1.7/24"}; !slices.Equal(got, want) {
		t.Fatalf("first block handed out %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), "[10.0.1.0/29]") {
		t.Errorf("message %q does not name the full block", err)
	}
	mustAddBlocks(t, s, "frontend", "10.0.1.64/29")
	got = nil
	for i := 0; i < 4; i++ {
		a, err := s.Allocate(inBlocks(string(rune('m'+i)), p))
		if err != nil {
			t.Fatalf("second block, allocation %d: %v", i, err)
		}
		got = append(got, ipStrings(a)...)
	}
	if want := []string{"10.0.1.64/24", "10.0.1.65/24", "10.0.1.67/24", "10.0.1.68/24"}; !slices.Equal(got, want) {
		t.Fatalf("second block handed out %v, want %v", got, want)
	}
	if a, err := s.Allocate(inBlocks("q", p)); err != nil || ipStrings(a)[0] != "10.0.1.69/24" {
		t.Fatalf("last address of the range = %v, %v", a.IPs, err)
	}
	if _, err := s.Allocate(inBlocks("r", p)); !errors.As(err, &full) ||
		!slices.Equal(full.Blocks, pfxs("10.0.1.0/29", "10.0.1.64/29")) {
		t.Fatalf("blocks full = %v", err)
	}
	// Local mode ignores the blocks.
	a, err := s.Allocate(request("local", "frontend", p))
	if err != nil || ipStrings(a)[0] != "10.0.1.8/24" {
		t.Errorf("local mode with blocks recorded = %v, %v", a.IPs, err)
	}
}

func TestBlocksRoundRobin(t *testing.T) {
	s, _ := openStore(t)
	mustAddBlocks(t, s, "frontend", "10.0.1.16/30", "10.0.1.8/30")
	var got []string
	for i := 0; i < 8; i++ {
		a, err := s.Allocate(inBlocks(string(rune('a'+i)), frontend()))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ipStrings(a)...)
	}
	want := []string{"10.0.1.8/24", "10.0.1.9/24", "10.0.1.10/24", "10.0.1.11/24",
		"10.0.1.16/24", "10.0.1.17/24", "10.0.1.18/24", "10.0.1.19/24"}
	if !slices.Equal(got, want) {
		t.Fatalf("allocation order %v, want %v", got, want)
	}
	// Released addresses come back in order after the cursor wraps.
	for _, cid := range []string{"f", "b"} { // 10.0.1.17, 10.0.1.9
		if _, _, err := s.Release(key(cid)); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range []string{"10.0.1.9/24", "10.0.1.17/24"} {
		a, err := s.Allocate(inBlocks(string(rune('x'+i)), frontend()))
		if err != nil || ipStrings(a)[0] != w {
			t.Errorf("after release, allocation %d = %v, %v; want %s", i, a.IPs, err, w)
		}
	}
}

func TestStaticInBlocks(t *testing.T) {
	s, _ := openStore(t)
	mustAddBlocks(t, s, "frontend", "10.0.1.64/26")
	req := inBlocks("a", frontend())
	req.Static = addrs("10.0.1.7")
	_, err := s.Allocate(req)
	var se *ipam.StaticError
	if !errors.As(err, &se) || !strings.Contains(se.Reason, "not inside a block this node owns") ||
		!strings.Contains(se.Reason, "10.0.1.64/26") {
		t.Fatalf("static outside the blocks: %v", err)
	}
	req.Static = addrs("10.0.1.100")
	if a, err := s.Allocate(req); err != nil || ipStrings(a)[0] != "10.0.1.100/24" {
		t.Fatalf("static inside a block = %v, %v", a.IPs, err)
	}
}

func TestBlocksDualStack(t *testing.T) {
	s, _ := openStore(t)
	v4 := frontend()
	v6 := pool("fd00:0:1::/64", "fd00:0:1::1", "fd00:0:1::1", "fd00:0:1::ffff")
	mustAddBlocks(t, s, "frontend", "10.0.1.64/26")
	// IPv4 has room, IPv6 has no block: nothing is leased.
	_, err := s.Allocate(inBlocks("a", v4, v6))
	var full *ipam.BlocksFullError
	if !errors.As(err, &full) || full.Subnet != v6.Subnet {
		t.Fatalf("dual stack without an IPv6 block: %v", err)
	}
	if _, found, _ := s.Get(key("a")); found {
		t.Error("a failed allocation left a record")
	}
	// The first IPv6 block holds the network address and the gateway.
	mustAddBlocks(t, s, "frontend", "fd00:0:1::/126")
	var got []string
	for i := 0; i < 2; i++ {
		a, err := s.Allocate(inBlocks(string(rune('a'+i)), v4, v6))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ipStrings(a)...)
	}
	want := []string{"10.0.1.64/24", "fd00:0:1::2/64", "10.0.1.65/24", "fd00:0:1::3/64"}
	if !slices.Equal(got, want) {
		t.Fatalf("dual stack in blocks = %v, want %v", got, want)
	}
	if _, err := s.Allocate(inBlocks("c", v4, v6)); !errors.As(err, &full) ||
		!slices.Equal(full.Blocks, pfxs("fd00:0:1::/126")) {
		t.Fatalf("IPv6 block full: %v", err)
	}
}
