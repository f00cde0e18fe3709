package node

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/overlay"
)

func nodeEv(typ cluster.EventType, name, underlay, mac string) cluster.Event {
	return cluster.Event{Type: typ, Node: &cluster.Node{Name: name, Underlay: netip.MustParseAddr(underlay), VTEPMAC: mac}}
}

func blockEv(typ cluster.EventType, network, zone, prefix, owner string) cluster.Event {
	return cluster.Event{Type: typ, Block: &cluster.Block{Network: network, Zone: zone, Prefix: netip.MustParsePrefix(prefix), Node: owner}}
}

func TestViewPeers(t *testing.T) {
	v := newView()
	served := map[string]bool{"prod": true}
	evs := []cluster.Event{
		nodeEv(cluster.EventPut, "n1", "192.0.2.1", "02:00:00:00:00:01"),
		nodeEv(cluster.EventPut, "n2", "192.0.2.2", "02:00:00:00:00:02"),
		nodeEv(cluster.EventPut, "n3", "192.0.2.3", "02:00:00:00:00:03"),
		blockEv(cluster.EventPut, "prod", "fe", "10.0.1.64/26", "n2"),
		blockEv(cluster.EventPut, "prod", "fe", "10.0.1.0/26", "n2"),
		blockEv(cluster.EventPut, "prod", "be", "10.0.2.0/26", "n1"),
		blockEv(cluster.EventPut, "other", "x", "10.9.0.0/26", "n3"), // not served
		blockEv(cluster.EventPut, "prod", "fe", "10.0.1.128/26", "gone"),
	}
	for _, ev := range evs {
		if !v.apply(ev) {
			t.Errorf("apply(%v) reported no change", ev)
		}
	}
	if v.synced {
		t.Fatal("synced before EventSynced")
	}
	if !v.apply(cluster.Event{Type: cluster.EventSynced}) || v.apply(cluster.Event{Type: cluster.EventSynced}) {
		t.Error("only the first EventSynced is a change")
	}
	peers, errs := v.peers("n1", served)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	want := []overlay.Peer{
		{Name: "n2", Underlay: netip.MustParseAddr("192.0.2.2"), VTEPMAC: mustMAC("02:00:00:00:00:02"),
			Blocks: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/26"), netip.MustParsePrefix("10.0.1.64/26")}},
		{Name: "n3", Underlay: netip.MustParseAddr("192.0.2.3"), VTEPMAC: mustMAC("02:00:00:00:00:03")},
	}
	if !peersEqual(peers, want) {
		t.Errorf("peers = %+v\nwant %+v", peers, want)
	}
	own := v.ownBlocks("n1", served)
	if len(own) != 1 || own[0].Prefix != netip.MustParsePrefix("10.0.2.0/26") {
		t.Errorf("own blocks %v", own)
	}

	// n2 dies: its lease ends, its blocks stay (for ReclaimDead) but are
	// not routed any more.
	v.apply(nodeEv(cluster.EventDelete, "n2", "192.0.2.2", "02:00:00:00:00:02"))
	peers, _ = v.peers("n1", served)
	if len(peers) != 1 || peers[0].Name != "n3" {
		t.Errorf("after n2 left: %+v", peers)
	}
	// n3 comes back with another MAC; a bad record is left out.
	v.apply(nodeEv(cluster.EventPut, "n3", "192.0.2.33", "02:00:00:00:00:33"))
	v.apply(nodeEv(cluster.EventPut, "bad", "192.0.2.9", "not-a-mac"))
	v.apply(blockEv(cluster.EventDelete, "prod", "fe", "10.0.1.128/26", "gone"))
	peers, errs = v.peers("n1", served)
	if len(peers) != 1 || peers[0].Underlay != netip.MustParseAddr("192.0.2.33") || peers[0].VTEPMAC.String() != "02:00:00:00:00:33" {
		t.Errorf("after n3 moved: %+v", peers)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "bad") {
		t.Errorf("errors %v", errs)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
