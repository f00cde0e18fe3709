package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/netns"
)

// Teardown detaches every container through the plugin, garbage-collects
// the network, checks that nothing was left behind in the host namespace
// or the store, and deletes the namespaces and the data directory. It does
// every step even when one fails, and returns all failures. What succeeded
// is forgotten, so calling it again only retries what is left.
func (d *Demo) Teardown() error {
	return errors.Join(d.Detach(), d.Remove())
}

// Detach is the first half of Teardown: listeners, DEL of every container,
// GC and the checks that nothing was left behind. The namespaces stay, so
// a caller can stop what it runs in them before Remove.
func (d *Demo) Detach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Not the caller's context: teardown must run after an interrupt.
	ctx := context.Background()
	var errs []error

	for _, l := range d.listeners {
		_ = l.Close()
	}
	d.listeners = nil

	hostUp := slices.Contains(d.nsMade, d.hostName)
	var failed []*Container
	for i := len(d.attempted) - 1; i >= 0 && hostUp; i-- {
		c := d.attempted[i]
		if err := d.plugin.Del(ctx, d.invocation(c)); err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", c.Name, err))
			failed = append(failed, c)
		}
	}
	d.attempted = failed
	if hostUp {
		if d.needGC {
			if err := d.plugin.GC(ctx, d.conf, nil); err != nil {
				errs = append(errs, fmt.Errorf("gc: %w", err))
			} else {
				d.needGC = false
			}
		}
		if err := d.checkHostClean(); err != nil {
			errs = append(errs, err)
		}
		if err := d.checkStoreEmpty(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove is the second half of Teardown: the namespaces and the data
// directory.
func (d *Demo) Remove() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	var left []string
	for i := len(d.nsMade) - 1; i >= 0; i-- {
		if err := netns.Delete(d.nsMade[i]); err != nil {
			errs = append(errs, err)
			left = append(left, d.nsMade[i])
		}
	}
	slices.Reverse(left)
	d.nsMade = left
	if len(left) == 0 {
		// Nothing can be detached any more once the namespaces are gone.
		d.attempted, d.needGC = nil, false
	}

	if d.dataDirSet {
		if err := os.RemoveAll(d.dataDir); err != nil {
			errs = append(errs, fmt.Errorf("remove data dir: %w", err))
		} else {
			d.dataDirSet = false
		}
	}
	return errors.Join(errs...)
}

// checkHostClean fails if a veth is still in the host namespace after every
// container was detached: DEL must remove the host side of the pair.
func (d *Demo) checkHostClean() error {
	var left []string
	err := netns.Do(d.hostPath, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Type() == "veth" {
				left = append(left, l.Attrs().Name)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list links in %s: %w", d.hostName, err)
	}
	if len(left) > 0 {
		return fmt.Errorf("after DEL and GC, veths remain in %s: %v", d.hostName, left)
	}
	return nil
}

// checkStoreEmpty fails if the plugin's store still records an attachment
// of the demo network after DEL and GC.
func (d *Demo) checkStoreEmpty() error {
	db := filepath.Join(d.dataDir, "zonenet.db")
	if _, err := os.Stat(db); err != nil {
		return nil // the plugin never wrote one
	}
	st, err := ipam.Open(db, 2*time.Second)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	atts, err := st.List(d.topo.Network)
	if err != nil {
		return fmt.Errorf("list store: %w", err)
	}
	if len(atts) > 0 {
		var keys []string
		for _, a := range atts {
			keys = append(keys, a.Key.String())
		}
		return fmt.Errorf("after DEL and GC, the store still holds %d attachments: %v", len(atts), keys)
	}
	return nil
}
