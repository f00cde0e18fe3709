//go:build linux

package main

import (
	"fmt"
	"time"
)

// measure interleaves the configurations op by op wherever ops are
// sequential, so drift in machine load hits all of them alike; the
// parallel bursts run one configuration at a time, back to back.
func measure(all []*bench) {
	as := active(all).live()
	p := as.params()

	end := step("exec floor (VERSION x30) and warm-up")
	for i := range 30 {
		for _, b := range as.rotated(i) {
			b.res.Version.record(b.plugin.run(b.host, call{command: "VERSION"}))
		}
	}
	for _, b := range as {
		if err := b.warmUp(); err != nil {
			b.res.Fatal = err.Error()
		}
	}
	as = as.live()
	end()

	end = step(fmt.Sprintf("%d sequential ADDs then %d DELs, per plugin", p.Ops, p.Ops))
	cs := as.containers(p.Ops)
	as = as.live()
	for i := range p.Ops {
		for _, b := range as.rotated(i) {
			b.res.SeqAdd.record(b.add(cs[b][i]))
		}
	}
	for i := range p.Ops {
		for _, b := range as.rotated(i) {
			b.res.SeqDel.record(b.del(cs[b][i]))
		}
	}
	as.release(cs)
	end()

	for _, b := range as {
		end = step(fmt.Sprintf("%s: %d parallel ADDs then %d parallel DELs", b.res.Label, p.Par, p.Par))
		cs, err := b.containers(p.Par)
		if err != nil {
			b.res.Fatal = err.Error()
			end()
			continue
		}
		b.res.ParAdd.WallMs = ms(parallel(cs, 0, b.recordInto(&b.res.ParAdd, b.add)))
		b.res.ParDel.WallMs = ms(parallel(cs, 0, b.recordInto(&b.res.ParDel, b.del)))
		b.release(cs)
		end()
	}
	as = as.live()

	// The scale figures are a ratio within one plugin, so each plugin runs
	// its four steps back to back, alone: the kernel then holds only its
	// own attachments, and load drift between plugins does not enter.
	for _, b := range as {
		b.scale(p)
	}
}

// scale times ADD+DEL pairs on no attachments, then on p.Existing kept
// ones, then drains them and gives the kernel a moment to finish tearing
// down the namespaces before the next plugin starts.
func (b *bench) scale(p params) {
	end := step(fmt.Sprintf("%s: %d ADD+DEL pairs on 0 attachments", b.res.Label, p.Pairs))
	err := b.pairs(p.Pairs, &b.res.AddEmpty, &b.res.DelEmpty)
	end()
	if err != nil {
		b.res.Fatal = err.Error()
		return
	}
	end = step(fmt.Sprintf("%s: creating %d kept attachments (untimed)", b.res.Label, p.Existing))
	kept, err := b.containers(p.Existing)
	if err != nil {
		end()
		b.res.Fatal = err.Error()
		return
	}
	defer func() {
		b.release(kept)
		time.Sleep(settle)
	}()
	parallel(kept, p.Fill, b.recordInto(&b.res.Fill, b.add))
	end()

	end = step(fmt.Sprintf("%s: %d ADD+DEL pairs on %d attachments", b.res.Label, p.Pairs, p.Existing))
	err = b.pairs(p.Pairs, &b.res.AddLoaded, &b.res.DelLoaded)
	end()
	if err != nil {
		b.res.Fatal = err.Error()
	}
	end = step(fmt.Sprintf("%s: draining kept attachments (untimed)", b.res.Label))
	parallel(kept, p.Fill, b.recordInto(&b.res.Drain, b.del))
	end()
}

// settle is an untimed pause after tearing down many namespaces: the
// kernel frees them asynchronously and that work would otherwise land on
// the next plugin's timings.
const settle = 3 * time.Second

func (as active) params() params {
	if len(as) == 0 {
		return params{}
	}
	return as[0].res.Params
}

// containers pre-creates n namespaces for every configuration; one that
// cannot get them drops out.
func (as active) containers(n int) map[*bench][]*container {
	cs := map[*bench][]*container{}
	for _, b := range as {
		c, err := b.containers(n)
		if err != nil {
			b.res.Fatal = err.Error()
			continue
		}
		cs[b] = c
	}
	return cs
}

func (as active) release(cs map[*bench][]*container) {
	for b, c := range cs {
		b.release(c)
	}
}
