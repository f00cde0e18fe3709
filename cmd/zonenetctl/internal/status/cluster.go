package status

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zonenet/zonenet/cluster"
)

// ClusterView is the cluster as etcd holds it at one revision: the
// registered nodes and every block, whether its owner is alive or not.
type ClusterView struct {
	Revision int64
	Nodes    []cluster.Node
	Blocks   []cluster.Block
	// Usages are the container counts each live node publishes (read
	// right after the listing, not at its revision).
	Usages []cluster.Usage
}

// LoadCluster reads nodes and blocks at a single revision: the watch's
// first listing, which is one read of the whole prefix, so a node and
// its blocks never come from two different moments.
func LoadCluster(ctx context.Context, s *cluster.Store) (ClusterView, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var v ClusterView
	for ev := range s.Watch(ctx) {
		switch {
		case ev.Type == cluster.EventSynced:
			v.Revision = ev.Revision
			sortView(&v)
			u, err := s.Usages(ctx)
			if err != nil {
				return v, err
			}
			v.Usages = u
			return v, nil
		case ev.Type != cluster.EventPut:
		case ev.Node != nil:
			v.Nodes = append(v.Nodes, *ev.Node)
		case ev.Block != nil:
			v.Blocks = append(v.Blocks, *ev.Block)
		}
	}
	if err := ctx.Err(); err != nil {
		return v, fmt.Errorf("read the cluster state: %w", err)
	}
	return v, fmt.Errorf("read the cluster state: the watch ended before a complete listing")
}

func sortView(v *ClusterView) {
	slices.SortFunc(v.Nodes, func(a, b cluster.Node) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(v.Blocks, func(a, b cluster.Block) int {
		if c := strings.Compare(a.Network, b.Network); c != 0 {
			return c
		}
		if c := strings.Compare(a.Zone, b.Zone); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
}

// WriteCluster prints the nodes (registered ones as up, owners of blocks
// without a registration as down) and then the blocks of every zone.
// A node is up while its lease lives: it renewed it within the TTL.
func WriteCluster(w io.Writer, v ClusterView, now time.Time) error {
	alive := map[string]bool{}
	for _, n := range v.Nodes {
		alive[n.Name] = true
	}
	owned := map[string][]string{}
	var down []string
	for _, b := range v.Blocks {
		if !alive[b.Node] && owned[b.Node] == nil {
			down = append(down, b.Node)
		}
		owned[b.Node] = append(owned[b.Node], b.Network+"/"+b.Zone+" "+b.Prefix.String())
	}
	slices.Sort(down)
	fmt.Fprintf(w, "NODES: %d up, %d down (revision %d)\n", len(v.Nodes), len(down), v.Revision)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tUNDERLAY\tVTEP MAC\tREGISTERED\tBLOCKS")
	for _, n := range v.Nodes {
		fmt.Fprintf(tw, "%s\tup\t%s\t%s\t%s\t%s\n", cell(n.Name), n.Underlay, cell(n.VTEPMAC),
			Age(n.Registered, now), list(owned[n.Name]))
	}
	for _, name := range down {
		fmt.Fprintf(tw, "%s\tdown (lease expired)\t-\t-\t-\t%s\n", cell(name), list(owned[name]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(v.Blocks) == 0 {
		_, err := fmt.Fprintln(w, "BLOCKS: none claimed yet")
		return err
	}
	fmt.Fprintln(w, "BLOCKS PER ZONE")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NETWORK\tZONE\tBLOCK\tNODE\tNODE STATE")
	for _, b := range v.Blocks {
		state := "up"
		if !alive[b.Node] {
			state = "down"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(b.Network), cell(b.Zone), b.Prefix, cell(b.Node), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeUsage(w, v.Usages)
}

// writeUsage prints the containers per zone and node, as the nodes last
// published them (every few seconds).
func writeUsage(w io.Writer, us []cluster.Usage) error {
	if len(us) == 0 {
		return nil
	}
	zones := map[string]bool{}
	for _, u := range us {
		for z := range u.Containers {
			zones[z] = true
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CONTAINERS PER ZONE")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "ZONE"
	for _, u := range us {
		head += "\t" + cell(u.Node)
	}
	fmt.Fprintln(tw, head+"\tTOTAL")
	for _, z := range slices.Sorted(maps.Keys(zones)) {
		line, total := cell(z), 0
		for _, u := range us {
			line += fmt.Sprintf("\t%d", u.Containers[z])
			total += u.Containers[z]
		}
		fmt.Fprintf(tw, "%s\t%d\n", line, total)
	}
	return tw.Flush()
}

// list joins a node's blocks without cell's truncation: a node may own
// many, and names in etcd are checked by the cluster store.
func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}
