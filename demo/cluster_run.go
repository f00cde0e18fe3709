package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// ClusterRunOptions drive RunCluster.
type ClusterRunOptions struct {
	ClusterConfig
	// Out receives the tables; nil discards them.
	Out io.Writer
	// PolicyName says in the output which policy is installed.
	PolicyName string
	// Keep leaves the cluster up until ctx is cancelled.
	Keep bool
}

// RunCluster builds the cluster demo, prints the nodes as etcd holds them,
// the attachments, the round trips between the nodes and the reachability
// matrix across all of them next to the policy's truth table, and tears
// everything down, also when ctx is cancelled midway. Cells that differ
// from the policy, round trips shorter than the configured delay, and
// anything left at teardown make it return an error.
func RunCluster(ctx context.Context, opt ClusterRunOptions) (err error) {
	out := opt.Out
	if out == nil {
		out = io.Discard
	}
	if opt.PolicyName == "" {
		opt.PolicyName = "none (everything allowed)"
		if opt.Policy != nil {
			opt.PolicyName = "given"
		}
	}
	c, err := NewCluster(opt.ClusterConfig)
	if err != nil {
		return err
	}
	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.Name)
	}
	fmt.Fprintf(out, "zonenet cluster demo: network %q on %d nodes (%s), etcd at %s in %s\nplugin: %s\nzonenetd: %s\n\n",
		c.topo.Network, len(c.Nodes), strings.Join(names, ", "), c.EtcdEndpoint(), c.ulName, opt.Plugin, opt.Zonenetd)

	var errs []error
	kept := false
	begin := time.Now()
	defer func() {
		fmt.Fprintf(out, "\ntearing down ...\n")
		t := time.Now()
		if terr := c.Teardown(); terr != nil {
			errs = append(errs, fmt.Errorf("teardown: %w", terr))
		} else {
			fmt.Fprintf(out, "detached every container, stopped %d zonenetd and etcd, removed %d namespaces and the run's files (%s; whole run %s)\n",
				len(c.Nodes), len(c.Namespaces()), time.Since(t).Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		}
		if ctx.Err() != nil && !kept {
			errs = append(errs, ErrInterrupted)
		}
		err = errors.Join(errs...)
	}()

	t := time.Now()
	if serr := c.Setup(ctx); serr != nil {
		// What a half-built cluster would show proves nothing: say
		// what attached, if anything, and tear down.
		if ctx.Err() == nil {
			errs = append(errs, fmt.Errorf("setup: %w", serr))
		}
		fmt.Fprintf(out, "Setup did not finish; attachments so far:\n")
		_ = WriteContainers(out, c.Containers())
		return nil
	}
	fmt.Fprintf(out, "Cluster up in %s: etcd with mutual TLS 1.3, one zonenetd per node, underlay %s\n",
		time.Since(t).Round(time.Millisecond), ClusterUnderlay)
	writeDelays(out, c)

	if st, serr := c.status(ctx); serr != nil {
		errs = append(errs, serr)
	} else {
		fmt.Fprintf(out, "\nNodes (zonenetctl status --etcd %s, run in %s)\n%s", c.EtcdEndpoint(), c.ulName, st)
	}
	fmt.Fprintf(out, "\nAttachments (the real plugin in each node's namespace)\n")
	_ = WriteContainers(out, c.Containers())
	if ctx.Err() != nil {
		return nil
	}

	fmt.Fprintf(out, "\nRound trips between the nodes (TCP request/response through the overlay)\n")
	rtts := c.measureRTT(ctx, 5)
	if ctx.Err() != nil {
		return nil
	}
	writeRTT(out, rtts)
	for _, r := range rtts {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("round trip %s -> %s: %w", r.from.Name, r.to.Name, r.err))
		}
	}

	errs = append(errs, c.writeMatrices(ctx, out, opt.PolicyName)...)

	if opt.Keep && ctx.Err() == nil {
		f := c.files("operator")
		fmt.Fprintf(out, "\nKeeping the cluster up; press Ctrl-C to tear it down. Try:\n")
		fmt.Fprintf(out, "  ip netns exec %s ip route   # node %s\n", c.Nodes[0].Demo.HostNetns(), c.Nodes[0].Name)
		fmt.Fprintf(out, "  ip netns exec %s %s status --etcd %s --ca %s --cert %s --key %s\n",
			c.ulName, opt.Ctl, c.EtcdEndpoint(), f.CA, f.Cert, f.Key)
		<-ctx.Done()
		kept = true
	}
	return nil
}

func writeDelays(out io.Writer, c *Cluster) {
	if len(c.cfg.Delays) == 0 {
		fmt.Fprintf(out, "No delay between the nodes (--delay=false)\n")
		return
	}
	var parts []string
	for _, d := range c.cfg.Delays {
		parts = append(parts, fmt.Sprintf("%s<->%s %s", d.A, d.B, d.OneWay))
	}
	fmt.Fprintf(out, "Nodes continents apart, one way on the underlay: %s (etcd not delayed)\n", strings.Join(parts, ", "))
}

// writeMatrices probes every port across all nodes, prints each observed
// matrix with the cells that differ from the policy marked, and returns an
// error if any differ.
func (c *Cluster) writeMatrices(ctx context.Context, out io.Writer, policyName string) []error {
	rows, cols := c.endpoints()
	nodeOf := map[string]string{}
	for _, n := range c.Nodes {
		for _, x := range n.Demo.Containers {
			nodeOf[x.Name] = n.Name
		}
	}
	t := time.Now()
	ms := make([]Matrix, len(c.ports()))
	retried := make([]int, len(ms))
	var wg sync.WaitGroup
	for i, port := range c.ports() {
		wg.Go(func() { ms[i], retried[i] = c.probe(ctx, port, rows, cols) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		// Cells cut short by the interrupt say nothing about the policy.
		return nil
	}
	fmt.Fprintf(out, "\nReachability across the nodes: TCP connects, rows connect to columns (probed in %s)\n",
		time.Since(t).Round(time.Millisecond))
	fmt.Fprintf(out, "Policy: %s; %s is the row's own node\n", policyName, GatewayName)
	var diff []Mismatch
	cells, cross := 0, 0
	for i, m := range ms {
		port := c.ports()[i]
		want := Expected(m, PolicyTable(c.policy, port))
		note := ""
		if retried[i] > 0 {
			note = fmt.Sprintf("; %d allowed cells retried once after a timeout", retried[i])
		}
		fmt.Fprintf(out, "\nPort %d, observed (%s); the policy expects %s%s:\n", port, Summary(m), Summary(want), note)
		_ = WriteMatrix(out, m, &want)
		for _, x := range Diff(m, want) {
			x.Src = fmt.Sprintf("%s (port %d)", x.Src, port)
			diff = append(diff, x)
		}
		for r, row := range want.Cells {
			for col, cell := range row {
				if cell.Outcome == Skip {
					continue
				}
				cells++
				if dst := want.Cols[col]; !dst.IsGateway && nodeOf[dst.Name] != nodeOf[want.Rows[r].Name] {
					cross++
				}
			}
		}
	}
	fmt.Fprintf(out, "\n%s", MatrixLegend)
	fmt.Fprintf(out, "\n%d of %d cells differ from the expected policy (%d cells between two nodes)\n", len(diff), cells, cross)
	for _, x := range diff {
		fmt.Fprintf(out, "  %s\n", x)
	}
	if len(diff) > 0 {
		return []error{fmt.Errorf("%d reachability cells differ from the expected policy", len(diff))}
	}
	return nil
}

// endpoints are the matrix's rows (every attached container of every
// node) and columns (the same, plus each row's own node gateway).
func (c *Cluster) endpoints() (rows, cols []Endpoint) {
	for _, n := range c.Nodes {
		r, _ := n.Demo.Endpoints()
		rows = append(rows, r...)
	}
	cols = append(append(cols, rows...), Endpoint{Name: GatewayName, IsGateway: true})
	return rows, cols
}

func (c *Cluster) ports() []int { return c.Nodes[0].Demo.Ports() }

// probe measures one port's matrix. A cell the policy allows that timed
// out is tried once more, unhurried: many first connects at once across
// delayed links can lose a SYN on a busy machine, while a denied cell never
// connects however long it waits. It returns how many cells it retried.
func (c *Cluster) probe(ctx context.Context, port int, rows, cols []Endpoint) (Matrix, int) {
	p := Prober{Port: port, DialTimeout: c.cfg.DialTimeout, Parallel: 64}
	m := p.Probe(ctx, rows, cols)
	want := Expected(m, PolicyTable(c.policy, port))
	slow := Prober{Port: port, DialTimeout: 2 * c.cfg.DialTimeout}
	n := 0
	for i, r := range m.Rows {
		for j, col := range m.Cols {
			if m.Cells[i][j].Outcome != Timeout || want.Cells[i][j].Outcome != OK || ctx.Err() != nil {
				continue
			}
			target := col.Addr
			if col.IsGateway {
				target = r.Gateway
			}
			m.Cells[i][j] = slow.probe(r.Netns, target, col.Name)
			n++
		}
	}
	return m, n
}

// writeRTT prints one line per pair of nodes.
func writeRTT(out io.Writer, rs []rttResult) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tDELAY EACH WAY\tCONNECT\tMIN\tMEDIAN\tMAX\tEXCHANGES")
	for _, r := range rs {
		if r.err != nil && len(r.samples) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\tFAILED: %s\t\t\t\t\n", r.from.Name, r.to.Name, delayCell(r.oneWay), oneLine(r.err.Error()))
			continue
		}
		lo, med, hi := spread(r.samples)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.from.Name, r.to.Name, delayCell(r.oneWay),
			ms(r.connect), ms(lo), ms(med), ms(hi), len(r.samples))
	}
	_ = tw.Flush()
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func delayCell(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}
