package node

import (
	"context"
	"maps"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/ipam"
)

// usageEvery is how often the node's container counts are read from its
// store; they are written to etcd only when they changed (or once a
// minute, to refresh a record lost with a lease).
const usageEvery = 5 * time.Second

// usageLoop publishes how many containers this node has in each zone, for
// `zonenetctl status`: ADD never reaches etcd, so only the node knows.
func (d *Daemon) usageLoop(ctx context.Context, store *cluster.Store) {
	t := time.NewTicker(usageEvery)
	defer t.Stop()
	var last map[string]int
	var sent time.Time
	for {
		now, err := d.countContainers()
		if err == nil && (!maps.Equal(now, last) || time.Since(sent) > time.Minute) {
			pctx, cancel := context.WithTimeout(ctx, usageEvery)
			if store.PutUsage(pctx, now) == nil {
				last, sent = now, time.Now()
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// countContainers reads the node's store: attachments per "network/zone"
// of every network this node serves.
func (d *Daemon) countContainers() (map[string]int, error) {
	st, err := ipam.Open(ipam.PathIn(d.dataDir), storeTimeout)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	out := map[string]int{}
	for _, n := range d.nets {
		atts, err := st.List(n.conf.Name)
		if err != nil {
			return nil, err
		}
		for _, z := range n.conf.Zones {
			out[n.conf.Name+"/"+z.Name] = 0
		}
		for _, a := range atts {
			out[n.conf.Name+"/"+a.Zone]++
		}
	}
	return out, nil
}
