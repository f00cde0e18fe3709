//go:build linux

// Package netdelay delays chosen packets inside a network namespace, for
// tests of nodes that are far apart ("continents apart": tens of
// milliseconds one way) on a kernel without the netem qdisc.
//
// # How
//
// One iptables rule in the namespace's mangle table sends the packets a
// Match selects to an NFQUEUE queue; this process binds that queue over
// NETLINK_NETFILTER, reads each queued packet's id, holds it for the delay
// and then gives the kernel an NF_ACCEPT verdict, which sends the packet on
// from the next hook. Verdicts go out in the order the packets came in, so
// the delay never reorders a flow (jitter included: a packet is never
// released before the one queued ahead of it).
//
// # Why in-process
//
// A netlink socket belongs to the namespace it was opened in, whichever
// thread uses it later, so the delayer opens its socket inside the
// namespace (netns.Do) and then runs on ordinary goroutines: no thread
// stays in the namespace and no binary has to be built or supervised.
// If the test process dies, the kernel closes the socket, which unbinds
// the queue; the rule's --queue-bypass then lets packets through
// undelayed, and the namespace goes with the test's cleanup. Stop (or the
// t.Cleanup that StartT registers) removes the rule, releases every packet
// still held and waits for the goroutines to end.
//
// # Limits
//
// Locally sent TCP packets still count against their socket while they are
// held (TCP small queues), so a bulk sender in the delaying namespace is
// capped near tcp_limit_output_bytes per delay; delay forwarded or received
// packets (FORWARD, PREROUTING) for bulk transfers. The delay is added in
// user space on a shared machine: expect a millisecond or so of error, more
// under load.
package netdelay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/netns"
)

// Options of a delayer.
type Options struct {
	Delay time.Duration // added to every packet
	// Jitter, when set, adds a uniform random offset in [-Jitter,
	// +Jitter] to each packet's delay (never below zero, never ahead of
	// the packet before it).
	Jitter time.Duration
	Seed   uint64 // of the jitter; the same seed gives the same offsets
	// Queue is the NFQUEUE number; 0 picks the first free one from
	// FirstQueue on, so several delayers can share a namespace.
	Queue uint16
	// MaxHeld bounds the packets held at once; 0 means 8192. Beyond it
	// the kernel passes packets undelayed (fail-open) rather than
	// dropping them.
	MaxHeld int
	// Tag goes into the rule's comment, to tell delayers apart.
	Tag string
}

// FirstQueue is where the automatic queue numbers start: far from 0, the
// number a hand-written NFQUEUE rule uses by default.
const FirstQueue = 4100

// copyRange is how much of each packet the kernel copies to us: we need
// the id only, and a little more makes the messages useful in a trace.
const copyRange = 64

// Stats are a delayer's counters.
type Stats struct {
	Packets  uint64 // packets accepted after their delay
	MaxHeld  int    // the most packets held at once
	Verdicts uint64 // verdicts that failed to send
}

// Delayer is one running delay: a rule, a bound queue and two goroutines.
type Delayer struct {
	nsPath string
	match  Match
	opts   Options
	queue  uint16
	c      *conn

	held     chan heldPacket
	flush    chan struct{} // closed by Stop: release without waiting
	closing  atomic.Bool   // the socket is being closed: its errors are expected
	closeOne sync.Once
	closeErr error
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error

	packets, failed atomic.Uint64
	maxHeld         atomic.Int64
	readErr         atomic.Value // error that ended the reader, if any
}

type heldPacket struct {
	id  uint32
	due time.Time
}

// Start delays the packets m selects by delay, inside the namespace at
// nsPath, until stop is called.
func Start(nsPath string, m Match, delay time.Duration) (stop func() error, err error) {
	d, err := StartWith(nsPath, m, Options{Delay: delay})
	if err != nil {
		return nil, err
	}
	return d.Stop, nil
}

// StartWith is Start with every option.
func StartWith(nsPath string, m Match, o Options) (*Delayer, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	if o.Delay < 0 || o.Jitter < 0 {
		return nil, fmt.Errorf("netdelay: delay %s, jitter %s: negative", o.Delay, o.Jitter)
	}
	if o.MaxHeld == 0 {
		o.MaxHeld = 8192
	}
	if o.MaxHeld < 1 || o.MaxHeld > 1<<20 {
		return nil, fmt.Errorf("netdelay: max held %d: out of range 1-1048576", o.MaxHeld)
	}
	var c *conn
	err := netns.Do(nsPath, func() error {
		var err error
		c, err = openConn()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netdelay: in %s: %w", nsPath, err)
	}
	queue, err := bindQueue(c, o.Queue, uint32(o.MaxHeld))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("netdelay: in %s: %w", nsPath, err)
	}
	d := &Delayer{
		nsPath: nsPath, match: m, opts: o, queue: queue, c: c,
		held:  make(chan heldPacket, o.MaxHeld),
		flush: make(chan struct{}),
	}
	d.wg.Add(2)
	go d.read()
	go d.release()
	// Insert, not append: a rule ahead of ours that accepted the packet
	// would end the mangle chain before it reached the queue.
	if err := iptables(nsPath, m.ipv6(), append([]string{"-I", m.chain(), "1"}, m.spec(queue, o.Tag)...)...); err != nil {
		d.shutdown()
		return nil, fmt.Errorf("netdelay: add rule: %w", err)
	}
	return d, nil
}

// bindQueue binds the queue asked for, or the first free one.
func bindQueue(c *conn, want uint16, maxLen uint32) (uint16, error) {
	if want != 0 {
		if err := c.bind(want, copyRange, maxLen); err != nil {
			return 0, fmt.Errorf("bind queue %d: %w", want, err)
		}
		return want, nil
	}
	for q := uint16(FirstQueue); q < FirstQueue+256; q++ {
		err := c.bind(q, copyRange, maxLen)
		if err == nil {
			return q, nil
		}
		// The kernel says EPERM when another socket owns the queue
		// and EBUSY when this one already does.
		if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EBUSY) {
			return 0, fmt.Errorf("bind queue %d: %w", q, err)
		}
	}
	return 0, fmt.Errorf("no free queue in %d-%d", FirstQueue, FirstQueue+255)
}

// Queue is the NFQUEUE number the delayer bound.
func (d *Delayer) Queue() uint16 { return d.queue }

// Match is what the delayer's rule selects.
func (d *Delayer) Match() Match { return d.match }

// Tag is the delayer's tag (Options.Tag).
func (d *Delayer) Tag() string { return d.opts.Tag }

// Stats returns the counters so far.
func (d *Delayer) Stats() Stats {
	return Stats{Packets: d.packets.Load(), MaxHeld: int(d.maxHeld.Load()), Verdicts: d.failed.Load()}
}

// read takes queued packets off the socket and schedules their release.
func (d *Delayer) read() {
	defer d.wg.Done()
	defer close(d.held)
	rng := rand.New(rand.NewPCG(d.opts.Seed, uint64(d.queue)))
	var last time.Time
	buf := make([]byte, 1<<17)
	for {
		n, err := d.c.recv(buf)
		if err != nil {
			if !d.closing.Load() {
				d.readErr.Store(err)
			}
			return
		}
		evs, err := parse(buf[:n])
		if err != nil {
			d.readErr.Store(err)
		}
		now := time.Now()
		for _, e := range evs {
			if !e.packet {
				continue
			}
			last = due(now, d.opts.Delay, d.opts.Jitter, rng, last)
			d.held <- heldPacket{id: e.id, due: last}
			if h := int64(len(d.held)); h > d.maxHeld.Load() {
				d.maxHeld.Store(h)
			}
		}
	}
}

// due is when a packet that arrived at now leaves: after delay plus a
// jitter offset, and never before the packet ahead of it (prev).
func due(now time.Time, delay, jitter time.Duration, rng *rand.Rand, prev time.Time) time.Time {
	d := delay
	if jitter > 0 {
		d += time.Duration(rng.Int64N(int64(2*jitter)+1)) - jitter
	}
	t := now.Add(max(d, 0))
	if t.Before(prev) {
		return prev
	}
	return t
}

// release accepts held packets when they are due, in order; after Stop it
// accepts the rest at once.
func (d *Delayer) release() {
	defer d.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for p := range d.held {
		if wait := time.Until(p.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-d.flush:
				timer.Stop()
			}
		}
		if err := d.c.send(verdictMessage(d.queue, p.id)); err != nil {
			// After the close the kernel has already dropped
			// the packet with the queue; only earlier failures
			// are the delayer's.
			if !d.closing.Load() {
				d.failed.Add(1)
			}
			continue
		}
		d.packets.Add(1)
	}
}

// Stop removes the rule, releases the packets still held, closes the
// socket and waits for the goroutines. Calling it again returns the first
// call's result.
func (d *Delayer) Stop() error {
	d.stopOnce.Do(func() {
		rerr := iptables(d.nsPath, d.match.ipv6(), append([]string{"-D", d.match.chain()}, d.match.spec(d.queue, d.opts.Tag)...)...)
		if rerr != nil {
			rerr = fmt.Errorf("netdelay: delete rule: %w", rerr)
		}
		d.stopErr = errors.Join(rerr, d.shutdown())
	})
	return d.stopErr
}

// shutdown releases what is held, ends the goroutines and closes the
// socket. Packets the kernel queued just before the rule went are read
// first: a quiet spell on the socket means none are left in flight.
func (d *Delayer) shutdown() error {
	close(d.flush)
	d.quiesce(20*time.Millisecond, time.Second)
	cerr := d.closeConn()
	d.wg.Wait()
	var err error
	if e, ok := d.readErr.Load().(error); ok {
		err = fmt.Errorf("netdelay: read queue %d: %w", d.queue, e)
	}
	if n := d.failed.Load(); n > 0 {
		err = errors.Join(err, fmt.Errorf("netdelay: %d verdicts failed to send", n))
	}
	return errors.Join(err, cerr)
}

// closeConn closes the socket once, which unbinds the queue and ends the
// reader.
func (d *Delayer) closeConn() error {
	d.closeOne.Do(func() {
		d.closing.Store(true)
		d.closeErr = d.c.Close()
	})
	return d.closeErr
}

// quiesce waits until nothing is held and no packet was accepted for
// quiet, at most limit.
func (d *Delayer) quiesce(quiet, limit time.Duration) {
	end := time.Now().Add(limit)
	seen, since := d.packets.Load(), time.Now()
	for time.Now().Before(end) {
		time.Sleep(quiet / 4)
		if n := d.packets.Load(); n != seen || len(d.held) > 0 {
			seen, since = n, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			return
		}
	}
}
