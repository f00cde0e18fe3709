package node

// Serving the cluster's policy.
//
// `zonenetctl policy push` stores one document per network in etcd. On
// each node the document must end up in two places that agree: the file
// the conflist's "policy" key names, because that is what the plugin's
// ADDs read when they set a zone up, and the node's filter table. So the
// daemon writes the file (temp file, fsync, rename: an ADD reads the old
// document or the new one, never half of each) and then installs it the
// way `zonenetctl policy apply` does, cutting the connections it forbids.
//
// etcd is not trusted to hold only valid documents: anyone with a
// certificate can write there. Each node validates the document against
// its own conflist's zones; a bad one is logged and ignored, and the node
// keeps the policy it runs. A deleted document is ignored too: no policy
// in etcd means "nothing pushed", not "allow everything".
//
// Bytes are compared before anything is written: a restart, a relist or
// a push of the same document installs nothing. An ADD that reads the old
// file just before the daemon writes the new one can still install the
// old rules after the daemon installed the new: the daemon's next install
// (a push, or a retry) puts the right ones back; `zonenetctl policy apply`
// does at once.
//
// The work runs on its own goroutine so that a slow iptables-restore (the
// lock is shared with every ADD of the machine) never holds up the
// overlay.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/plugin"
)

// policyServer keeps the policy of every served network in step with etcd.
type policyServer struct {
	log *slog.Logger
	st  *state
	// install puts the policy of a conflist's network in place in this
	// namespace, reading the file the conflist names, and returns it with
	// the number of connections it cut.
	install func(conflist []byte) (*conf.Policy, int, error)

	mu     sync.Mutex
	offers map[string]cluster.Event // latest per network, not yet handled
	synced bool                     // the watch listed everything once
	wake   chan struct{}

	// Fixed at start (offer reads it); the entries are owned by the
	// goroutine that handles offers.
	nets map[string]*servedPolicy
}

// servedPolicy is what the node knows of one network's policy.
type servedPolicy struct {
	net    network
	latest *cluster.Policy // what etcd holds; nil: nothing (yet, or deleted)
	// installed is the revision the node runs, as far as it knows; stale
	// says the file holds latest but installing it failed.
	installed int64
	stale     bool
	// refused is the revision last refused, so it is logged once.
	refused int64
}

func newPolicyServer(nets []network, st *state, log *slog.Logger) *policyServer {
	p := &policyServer{log: log, st: st, offers: map[string]cluster.Event{}, wake: make(chan struct{}, 1),
		nets: map[string]*servedPolicy{},
		install: func(conflist []byte) (*conf.Policy, int, error) {
			return plugin.ApplyPolicy(acl.Exec{}, acl.KernelConntrack{}, conflist, "")
		}}
	for _, n := range nets {
		p.nets[n.conf.Name] = &servedPolicy{net: n}
	}
	return p
}

// offer takes a policy event from the watch; only the latest per network
// counts. Called by the follower, never blocks.
func (p *policyServer) offer(ev cluster.Event) {
	if ev.Policy == nil || p.nets[ev.Policy.Network] == nil {
		return
	}
	p.mu.Lock()
	p.offers[ev.Policy.Network] = ev
	ready := p.synced
	p.mu.Unlock()
	if ready {
		p.poke()
	}
}

// listed opens the gate after the watch's first complete listing: before
// it, a network's absence from the events proves nothing.
func (p *policyServer) listed() {
	p.mu.Lock()
	first := !p.synced
	p.synced = true
	p.mu.Unlock()
	if first {
		p.poke()
	}
}

func (p *policyServer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run handles offers as they come and, every resync, checks each file
// again: an install that failed is retried, a file changed by hand gets
// the cluster's document back.
func (p *policyServer) run(ctx context.Context, resync time.Duration) {
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
			p.step(false)
		case <-t.C:
			p.step(true)
		}
	}
}

// step handles what was offered since the last step, and with all every
// network that has a document.
func (p *policyServer) step(all bool) {
	p.mu.Lock()
	if !p.synced {
		p.mu.Unlock()
		return
	}
	offers := p.offers
	p.offers = map[string]cluster.Event{}
	p.mu.Unlock()
	for _, name := range sortedKeys(p.nets) {
		sp := p.nets[name]
		ev, offered := offers[name]
		switch {
		case offered && ev.Type == cluster.EventDelete:
			sp.latest = nil
			p.log.Warn("the policy of this network was deleted from etcd: this node keeps the one it runs",
				"network", name, "revision", ev.Revision, "file", sp.net.conf.Policy)
			continue
		case offered:
			pol := *ev.Policy
			sp.latest = &pol
		case !all:
			continue
		}
		p.serve(sp)
	}
}

// serve brings the file and the filter table of one network to the
// document etcd holds, if it is one this node can take.
func (p *policyServer) serve(sp *servedPolicy) {
	doc := sp.latest
	if doc == nil {
		return
	}
	c := sp.net.conf
	log := p.log.With("network", c.Name, "revision", doc.Revision)
	if why := p.refusal(sp, doc); why != "" {
		if sp.refused != doc.Revision {
			sp.refused = doc.Revision
			p.st.policyRefusedOne()
			log.Error("refused the policy in etcd: this node keeps the one it runs", "why", why,
				"running", sp.installed, "conflist", sp.net.path)
		}
		return
	}
	cur, err := os.ReadFile(c.Policy)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Error("read the policy file", "err", err)
		return
	}
	same := err == nil && bytes.Equal(cur, doc.Doc)
	if same && !sp.stale {
		if sp.installed != doc.Revision {
			// The file was already this document: a restart, or the
			// same bytes pushed again. The plugin installed it.
			log.Info("policy already in place", "file", c.Policy)
			sp.installed = doc.Revision
			p.st.policyInPlace(c.Name, doc.Revision)
		}
		return
	}
	if !same {
		if err := writeFileAtomic(c.Policy, doc.Doc, 0o644); err != nil {
			log.Error("write the policy file: retrying at the next resync", "err", err)
			return
		}
		if sp.installed == doc.Revision {
			log.Warn("the policy file was changed on this node: the cluster's document is back", "file", c.Policy)
		}
		log.Info("policy file written", "file", c.Policy, "bytes", len(doc.Doc))
	}
	start := time.Now()
	pol, cut, err := p.install(sp.net.raw)
	if err != nil {
		sp.stale = true
		p.st.policyFailed(c.Name, err)
		log.Error("install the policy: retrying at the next resync", "file", c.Policy, "err", err)
		return
	}
	sp.stale, sp.installed = false, doc.Revision
	p.st.policyInstalled(c.Name, doc.Revision)
	log.Info("policy installed", "file", c.Policy, "zones", len(pol.Zones), "rules", len(pol.Rules),
		"cut", cut, "took", time.Since(start).Round(time.Millisecond))
}

// refusal says why this node cannot take a document, or "".
func (p *policyServer) refusal(sp *servedPolicy, doc *cluster.Policy) string {
	c := sp.net.conf
	switch {
	case c.Policy == "":
		// A file of the daemon's own would be installed now and forgotten
		// by the next ADD, which installs no policy at all.
		return `the conflist has no "policy" key, so the plugin's ADDs would not see the document; add one naming the file zonenetd is to keep`
	case !filepath.IsAbs(c.Policy):
		return fmt.Sprintf("the conflist's policy %q is relative: the plugin resolves it in the runtime's directory, which zonenetd cannot know", c.Policy)
	}
	if _, _, err := conf.ParsePolicy(doc.Doc, c.Zones); err != nil {
		return "invalid for this network's zones: " + strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	return ""
}

// writeFileAtomic replaces path with data: readers see the old file or
// the new one, and after a crash the file is one of the two.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	// CreateTemp makes 0600 files; the plugin may read as another user.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	done = true
	// The rename is durable once the directory is.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
