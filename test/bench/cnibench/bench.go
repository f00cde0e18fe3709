//go:build linux

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// params are the knobs of one run; the script passes them from OPS, PAR,
// EXISTING and PAIRS.
type params struct {
	Ops      int `json:"ops"`
	Par      int `json:"par"`
	Existing int `json:"existing"`
	Pairs    int `json:"pairs"`
	Fill     int `json:"fillConcurrency"`
}

// phase holds the timings of one measured step. Samples are per-op
// latencies in milliseconds; WallMs is set for the parallel steps.
type phase struct {
	Samples    []float64 `json:"samplesMs,omitempty"`
	WallMs     float64   `json:"wallMs,omitempty"`
	Ops        int       `json:"ops"`
	Failures   int       `json:"failures"`
	FirstError string    `json:"firstError,omitempty"`
}

// result is what one `run` writes and `table` reads.
type result struct {
	Label     string `json:"label"`
	LoadStart string `json:"loadStart,omitempty"`
	LoadEnd   string `json:"loadEnd,omitempty"`
	Fatal     string `json:"fatal,omitempty"`
	Params    params `json:"params"`
	Version   phase  `json:"version"`
	SeqAdd    phase  `json:"seqAdd"`
	SeqDel    phase  `json:"seqDel"`
	ParAdd    phase  `json:"parAdd"`
	ParDel    phase  `json:"parDel"`
	AddEmpty  phase  `json:"addEmpty"`
	DelEmpty  phase  `json:"delEmpty"`
	Fill      phase  `json:"fill"`
	AddLoaded phase  `json:"addLoaded"`
	DelLoaded phase  `json:"delLoaded"`
	Drain     phase  `json:"drain"`
}

func (p *phase) record(o outcome) {
	p.Ops++
	p.Samples = append(p.Samples, float64(o.elapsed.Microseconds())/1000)
	if o.err != nil {
		p.fail(o.err)
	}
}

func (p *phase) fail(err error) {
	p.Failures++
	if p.FirstError == "" {
		p.FirstError = err.Error()
	}
}

// container is one attachment: a pinned netns, a unique ID and, once added,
// the ADD result that libcni would cache and hand back on DEL.
type container struct {
	id     string
	netns  string
	result []byte
	ips    []string
}

// bench is one plugin configuration under test, with its own host
// namespace, its own address book and its own result.
type bench struct {
	plugin *plugin
	host   *hostNS
	pool   nsPool
	seed   string
	res    *result
	out    string

	mu   sync.Mutex
	next int
	live map[string]string // address -> container ID, to catch double allocation
}

// newID returns a container ID shaped like a runtime's (64 hex chars),
// unique per op.
func (b *bench) newID() string {
	b.mu.Lock()
	b.next++
	n := b.next
	b.mu.Unlock()
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", b.seed, n)))
	return hex.EncodeToString(sum[:])
}

func (b *bench) containers(n int) ([]*container, error) {
	cs := make([]*container, 0, n)
	for range n {
		id := b.newID()
		path, err := b.pool.create(id[:16])
		if err != nil {
			b.release(cs)
			return nil, err
		}
		cs = append(cs, &container{id: id, netns: path})
	}
	return cs, nil
}

func (b *bench) release(cs []*container) {
	for _, c := range cs {
		if err := b.pool.remove(c.netns); err != nil {
			fmt.Fprintln(os.Stderr, "warning:", err)
		}
	}
}

func (b *bench) add(c *container) outcome {
	o := b.plugin.run(b.host, call{command: "ADD", containerID: c.id, netns: c.netns})
	if o.err != nil {
		return o
	}
	ips, err := resultIPs(o.stdout)
	if err != nil {
		o.err = err
		return o
	}
	c.result, c.ips = o.stdout, ips
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ip := range ips {
		if other, dup := b.live[ip]; dup {
			o.err = fmt.Errorf("ADD %s got %s, already held by %s", c.id, ip, other)
			return o
		}
		b.live[ip] = c.id
	}
	return o
}

// del is issued for every container, added or not, as a runtime does after
// a failed ADD.
func (b *bench) del(c *container) outcome {
	o := b.plugin.run(b.host, call{command: "DEL", containerID: c.id, netns: c.netns, prevResult: c.result})
	if o.err == nil {
		b.mu.Lock()
		for _, ip := range c.ips {
			delete(b.live, ip)
		}
		b.mu.Unlock()
		c.result, c.ips = nil, nil
	}
	return o
}

// parallel runs fn over cs with at most conc in flight and returns the wall
// time from the first start to the last finish. conc <= 0 means all at
// once, released together.
func parallel(cs []*container, conc int, fn func(*container)) time.Duration {
	if conc <= 0 || conc > len(cs) {
		conc = len(cs)
	}
	work := make(chan *container, len(cs))
	for _, c := range cs {
		work <- c
	}
	close(work)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for range conc {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			for c := range work {
				fn(c)
			}
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	return time.Since(t0)
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	nsdir := fs.String("nsdir", "", "directory for container netns pins")
	outer := fs.String("outer-netns", "", "netns file of the machine's own namespace, which no plugin may run in")
	var p params
	fs.IntVar(&p.Ops, "ops", 200, "sequential ADDs, then as many DELs")
	fs.IntVar(&p.Par, "par", 100, "parallel ADDs, then as many DELs")
	fs.IntVar(&p.Existing, "existing", 500, "attachments kept during the loaded ADD measurement")
	fs.IntVar(&p.Pairs, "pairs", 50, "ADD+DEL pairs measured at 0 and at -existing attachments")
	fs.IntVar(&p.Fill, "fill", 4, "concurrency used to create and drain the kept attachments (untimed)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: cnibench run [flags] LABEL:CONFLIST:BINDIR:HOSTNS:OUT ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nsdir == "" || *outer == "" || fs.NArg() == 0 {
		fs.Usage()
		return errors.New("run: -nsdir, -outer-netns and at least one target are required")
	}
	if err := notOuterNetNS(*outer); err != nil {
		return err
	}
	load := loadAvg()
	var benches []*bench
	for _, spec := range fs.Args() {
		b, err := newBench(spec, p, *nsdir, *outer)
		if err != nil {
			return err
		}
		b.res.LoadStart = load
		benches = append(benches, b)
	}
	measure(benches)
	var errs []error
	for _, b := range benches {
		b.res.LoadEnd = loadAvg()
		errs = append(errs, writeJSON(b.out, b.res))
		if b.res.Fatal != "" {
			errs = append(errs, fmt.Errorf("%s: %s", b.res.Label, b.res.Fatal))
		}
	}
	return errors.Join(errs...)
}

// newBench parses LABEL:CONFLIST:BINDIR:HOSTNS:OUT. A configuration that
// cannot even be loaded is recorded as fatal in its result and left out.
func newBench(spec string, p params, nsdir, outer string) (*bench, error) {
	f := strings.Split(spec, ":")
	if len(f) != 5 {
		return nil, fmt.Errorf("target %q: want LABEL:CONFLIST:BINDIR:HOSTNS:OUT", spec)
	}
	b := &bench{
		res:  &result{Label: f[0], Params: p},
		out:  f[4],
		seed: fmt.Sprintf("%s/%d/%d", f[0], os.Getpid(), time.Now().UnixNano()),
		live: map[string]string{},
		pool: nsPool{dir: filepath.Join(nsdir, f[0])},
	}
	err := func() error {
		pl, err := loadPlugin(f[1], f[2])
		if err != nil {
			return err
		}
		b.plugin = pl
		if err := notOuterNetNS(outer); err != nil {
			return err
		}
		if b.host, err = openHostNS(f[3]); err != nil {
			return err
		}
		if err := notSameNS(b.host.path, outer); err != nil {
			return err
		}
		return os.MkdirAll(b.pool.dir, 0o755)
	}()
	if err != nil {
		b.res.Fatal = err.Error()
	}
	return b, nil
}

// active is the set of configurations still being measured; one whose
// warm-up or setup failed drops out and the others carry on.
type active []*bench

func (as active) live() active {
	var out active
	for _, b := range as {
		if b.res.Fatal == "" {
			out = append(out, b)
		}
	}
	return out
}

// rotated returns the configurations starting at i, so that no plugin is
// always the first to run after a switch.
func (as active) rotated(i int) active {
	if len(as) == 0 {
		return nil
	}
	i %= len(as)
	return append(append(active{}, as[i:]...), as[:i]...)
}

func step(name string) func() {
	t0 := time.Now()
	fmt.Fprintf(os.Stderr, "  %s ...", name)
	return func() { fmt.Fprintf(os.Stderr, " %.1fs\n", time.Since(t0).Seconds()) }
}

// warmUp fills the page cache and lets the plugin create its bridge and
// long-lived chains before anything is timed.
func (b *bench) warmUp() error {
	warm, err := b.containers(3)
	if err != nil {
		return err
	}
	defer b.release(warm)
	for _, c := range warm {
		if o := b.add(c); o.err != nil {
			b.del(c)
			return fmt.Errorf("warm-up ADD failed, nothing measured: %w", o.err)
		}
		if o := b.del(c); o.err != nil {
			return fmt.Errorf("warm-up DEL failed, nothing measured: %w", o.err)
		}
	}
	return nil
}

func (b *bench) recordInto(ph *phase, fn func(*container) outcome) func(*container) {
	return func(c *container) {
		o := fn(c)
		b.mu.Lock()
		ph.record(o)
		b.mu.Unlock()
	}
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func failCmd(args []string) error {
	fs := flag.NewFlagSet("fail", flag.ContinueOnError)
	label := fs.String("label", "", "column label")
	msgFile := fs.String("msg-file", "", "file holding the error text")
	out := fs.String("out", "", "result JSON file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	msg, err := os.ReadFile(*msgFile)
	if err != nil {
		return err
	}
	return writeJSON(*out, &result{Label: *label, Fatal: trim(string(msg))})
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}

func (b *bench) pairs(n int, add, del *phase) error {
	cs, err := b.containers(n)
	if err != nil {
		return err
	}
	defer b.release(cs)
	for _, c := range cs {
		add.record(b.add(c))
		del.record(b.del(c))
	}
	return nil
}
