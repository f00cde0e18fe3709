//go:build linux

package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/overlay"
)

// programmedState is what a node's kernel holds for fake nodes 1..n, with
// the route of fake i to block i.
func programmedState(n int) overlay.State {
	var st overlay.State
	for i := 1; i <= n; i++ {
		p := fakePeer(i)
		st.FDB = append(st.FDB, overlay.FDBEntry{MAC: p.mac, Dst: p.underlay, Permanent: true})
		st.Neighs = append(st.Neighs, overlay.NeighEntry{IP: p.underlay, MAC: p.mac, Permanent: true})
		blk := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 240, byte(i >> 2), byte(i%4) * 64}), blockBits)
		st.Routes = append(st.Routes, overlay.RouteEntry{Dst: blk, Gw: p.underlay, OnLink: true})
		st.PeerSet = append(st.PeerSet, p.underlay)
	}
	return st
}

// The checks the timings stop on: a check that holds too early would
// make every figure meaningless.
func TestChecks(t *testing.T) {
	alive := map[int]bool{1: true, 2: true, 3: true}
	if why := hasFakes(alive)(programmedState(3)); why != "" {
		t.Errorf("all programmed: %s", why)
	}
	partial := programmedState(3)
	partial.Routes = partial.Routes[:2]
	if why := hasFakes(alive)(partial); !strings.Contains(why, "fake-03") {
		t.Errorf("fake-03 has no route: %q", why)
	}
	if why := hasFakes(map[int]bool{1: true, 2: true})(programmedState(3)); why == "" {
		t.Error("an extra peer in the kernel went unnoticed")
	}

	st := programmedState(3)
	p := fakePeer(2)
	p.blocks = []netip.Prefix{st.Routes[1].Dst}
	if miss := programmed(st, p); miss != "" {
		t.Errorf("fake-02 programmed: %s", miss)
	}
	st.PeerSet = st.PeerSet[:1]
	if miss := programmed(st, p); miss != "peer set" {
		t.Errorf("fake-02 out of the set: %q", miss)
	}
	if k := mentions(st, p); k != 3 {
		t.Errorf("fake-02's fdb, neigh and route: %d mentions", k)
	}
	if k := mentions(overlay.State{}, p); k != 0 {
		t.Errorf("empty kernel: %d mentions", k)
	}
}
