//go:build linux

package multinode

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/cluster"
)

// blockAudit is what a cluster handed out in one zone, gathered from
// every side that could disagree: the ADD results, each node's store
// (its leases and the blocks it allocates from) and etcd (who owns which
// block). The rule under test is that an address belongs to one container
// in the whole cluster, and that holds only if all of them agree.
type blockAudit struct {
	subnet  netip.Prefix // the zone's
	bits    int          // the network's block size
	etcd    []cluster.Block
	local   map[string][]netip.Prefix // node → blocks in its store
	leases  map[string][]netip.Addr   // node → addresses leased in its store
	results map[string][]netip.Addr   // node → addresses its ADDs returned
}

// problems lists every breach, one line each, sorted; none means the zone
// is consistent.
func (a blockAudit) problems() []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	// etcd: well-formed blocks of the zone, none overlapping another.
	owner := map[netip.Prefix]string{}
	for i, b := range a.etcd {
		if b.Prefix.Bits() != a.bits || b.Prefix != b.Prefix.Masked() || !a.subnet.Contains(b.Prefix.Addr()) {
			bad("etcd: block %s of %s is not a /%d block of %s", b.Prefix, b.Node, a.bits, a.subnet)
		}
		for _, o := range a.etcd[:i] {
			if o.Prefix.Overlaps(b.Prefix) {
				bad("etcd: block %s of %s overlaps block %s of %s", b.Prefix, b.Node, o.Prefix, o.Node)
			}
		}
		owner[b.Prefix] = b.Node
	}
	ownerOf := func(ip netip.Addr) (netip.Prefix, string) {
		p := netip.PrefixFrom(ip, a.bits).Masked()
		if n, ok := owner[p]; ok {
			return p, n
		}
		return p, ""
	}

	// Each node allocates only in blocks etcd gives it: a block recorded
	// by two nodes would be handed out by both.
	for _, node := range sortedNodes(a.local) {
		for _, p := range a.local[node] {
			switch o, ok := owner[p]; {
			case !ok:
				bad("%s: its store holds block %s, which etcd gives to nobody", node, p)
			case o != node:
				bad("%s: its store holds block %s, which etcd gives to %s", node, p, o)
			}
		}
	}

	// Every address once in the cluster, inside a block of the node that
	// handed it out.
	by := map[netip.Addr][]string{}
	for _, node := range sortedNodes(a.results) {
		for _, ip := range a.results[node] {
			by[ip] = append(by[ip], node)
			switch p, o := ownerOf(ip); {
			case !a.subnet.Contains(ip):
				bad("%s: handed out %s, outside the zone's %s", node, ip, a.subnet)
			case o == "":
				bad("%s: handed out %s, in block %s that etcd gives to nobody", node, ip, p)
			case o != node:
				bad("%s: handed out %s, in block %s that etcd gives to %s", node, ip, p, o)
			}
		}
	}
	for ip, nodes := range by {
		if len(nodes) > 1 {
			bad("address %s handed out %d times, by %s", ip, len(nodes), strings.Join(nodes, ", "))
		}
	}

	// The stores hold exactly what the ADDs returned: a lease without a
	// result leaked from a failed ADD, a result without a lease can be
	// handed out again.
	for _, node := range sortedNodes(a.results, a.leases) {
		got, want := a.leases[node], a.results[node]
		for _, ip := range want {
			if !slices.Contains(got, ip) {
				bad("%s: ADD returned %s, which its store does not lease", node, ip)
			}
		}
		for _, ip := range got {
			if !slices.Contains(want, ip) {
				bad("%s: its store leases %s, which no successful ADD returned", node, ip)
			}
		}
	}
	slices.Sort(out)
	return out
}

// blocksOf counts the etcd blocks of each node.
func (a blockAudit) blocksOf() map[string]int {
	out := map[string]int{}
	for _, b := range a.etcd {
		out[b.Node]++
	}
	return out
}

// unused lists the blocks etcd gives a node that none of its addresses
// is in: claims a burst made in vain.
func (a blockAudit) unused() []string {
	var out []string
	for _, b := range a.etcd {
		used := slices.ContainsFunc(a.results[b.Node], func(ip netip.Addr) bool { return b.Prefix.Contains(ip) })
		if !used {
			out = append(out, b.Node+" "+b.Prefix.String())
		}
	}
	return out
}

func sortedNodes[V any](ms ...map[string]V) []string {
	var out []string
	for _, m := range ms {
		for k := range m {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// parseStatusBlocks reads the blocks of one zone from the table
// `zonenetctl status --etcd` prints under "BLOCKS PER ZONE":
// NETWORK ZONE BLOCK NODE NODE-STATE.
func parseStatusBlocks(out, network, zone string) ([]cluster.Block, error) {
	_, table, ok := strings.Cut(out, "BLOCKS PER ZONE\n")
	if !ok {
		if strings.Contains(out, "BLOCKS: none claimed yet") {
			return nil, nil
		}
		return nil, fmt.Errorf("no block table in zonenetctl status:\n%s", out)
	}
	table, _, _ = strings.Cut(table, "\n\n") // the containers table follows
	var blocks []cluster.Block
	for i, l := range strings.Split(strings.TrimSpace(table), "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) == 0 {
			continue // the header
		}
		if len(f) != 5 {
			return nil, fmt.Errorf("zonenetctl status: block line %q", l)
		}
		if f[0] != network || f[1] != zone {
			continue
		}
		p, err := netip.ParsePrefix(f[2])
		if err != nil {
			return nil, fmt.Errorf("zonenetctl status: block line %q: %v", l, err)
		}
		blocks = append(blocks, cluster.Block{Network: f[0], Zone: f[1], Prefix: p, Node: f[3]})
	}
	return blocks, nil
}

// TestBlockAudit: the audit finds each kind of breach, and nothing in a
// consistent zone. It needs no root.
func TestBlockAudit(t *testing.T) {
	pfx := netip.MustParsePrefix
	ip := netip.MustParseAddr
	ok := blockAudit{
		subnet: pfx("10.98.0.0/23"), bits: 28,
		etcd: []cluster.Block{
			{Prefix: pfx("10.98.0.0/28"), Node: "node1"},
			{Prefix: pfx("10.98.0.16/28"), Node: "node2"},
		},
		local:   map[string][]netip.Prefix{"node1": {pfx("10.98.0.0/28")}, "node2": {pfx("10.98.0.16/28")}},
		leases:  map[string][]netip.Addr{"node1": {ip("10.98.0.2")}, "node2": {ip("10.98.0.17")}},
		results: map[string][]netip.Addr{"node1": {ip("10.98.0.2")}, "node2": {ip("10.98.0.17")}},
	}
	if p := ok.problems(); len(p) != 0 {
		t.Errorf("consistent zone: %q", p)
	}
	if u := ok.unused(); len(u) != 0 {
		t.Errorf("unused blocks of a consistent zone: %q", u)
	}

	// node2 allocates in node1's block as if it had claimed it: the
	// breach a claim that skipped etcd's transaction would make.
	forged := ok
	forged.local = map[string][]netip.Prefix{"node1": {pfx("10.98.0.0/28")}, "node2": {pfx("10.98.0.0/28"), pfx("10.98.0.16/28")}}
	forged.leases = map[string][]netip.Addr{"node1": {ip("10.98.0.2")}, "node2": {ip("10.98.0.2"), ip("10.98.0.17"), ip("10.98.0.40")}}
	forged.results = map[string][]netip.Addr{"node1": {ip("10.98.0.2")}, "node2": {ip("10.98.0.2"), ip("10.98.0.17")}}
	forged.etcd = append(slices.Clone(ok.etcd), cluster.Block{Prefix: pfx("10.98.0.0/27"), Node: "node3"})
	want := []string{
		"address 10.98.0.2 handed out 2 times, by node1, node2",
		"etcd: block 10.98.0.0/27 of node3 is not a /28 block of 10.98.0.0/23",
		"etcd: block 10.98.0.0/27 of node3 overlaps block 10.98.0.0/28 of node1",
		"etcd: block 10.98.0.0/27 of node3 overlaps block 10.98.0.16/28 of node2",
		"node2: handed out 10.98.0.2, in block 10.98.0.0/28 that etcd gives to node1",
		"node2: its store holds block 10.98.0.0/28, which etcd gives to node1",
		"node2: its store leases 10.98.0.40, which no successful ADD returned",
	}
	if got := forged.problems(); !slices.Equal(got, want) {
		t.Errorf("forged zone:\ngot  %q\nwant %q", got, want)
	}
}

func TestParseStatusBlocks(t *testing.T) {
	out := `NODES: 2 up, 0 down (revision 41)
NODE   STATE  UNDERLAY   VTEP MAC           REGISTERED  BLOCKS
node1  up     10.1.0.1   02:aa:bb:cc:dd:ee  5s          mn1/backend 10.98.0.0/28

BLOCKS PER ZONE
NETWORK  ZONE      BLOCK          NODE   NODE STATE
mn1      backend   10.98.0.0/28   node1  up
mn1      frontend  10.100.0.0/28  node2  up
mn2      backend   10.98.0.16/28  node2  down
`
	got, err := parseStatusBlocks(out, "mn1", "backend")
	if err != nil {
		t.Fatal(err)
	}
	want := []cluster.Block{{Network: "mn1", Zone: "backend", Prefix: netip.MustParsePrefix("10.98.0.0/28"), Node: "node1"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, err := parseStatusBlocks("NODES: 0 up, 0 down (revision 1)\n\nBLOCKS: none claimed yet\n", "mn1", "backend"); err != nil || got != nil {
		t.Errorf("no blocks: %v %v", got, err)
	}
}
