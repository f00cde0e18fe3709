package node

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/zonenet/zonenet/ipam"
)

// storeTimeout bounds the wait for the node store, which plugin execs hold
// for one transaction at a time.
const storeTimeout = 3 * time.Second

// syncLocalBlocks makes the node store (where the plugin allocates) agree
// with the cluster on the blocks this node owns, for the zones of the
// networks it serves:
//   - a block the cluster gives this node that the store lacks is recorded
//     (a claim whose answer was lost, or a store that was wiped), so the
//     plugin uses it rather than claiming yet another;
//   - a block the store holds that the cluster does not give this node
//     (freed while the node was away longer than the grace period, and
//     perhaps claimed by another node since) is forgotten if forget is set
//     and no container holds an address in it; otherwise it is reported,
//     because peers do not route it here and another node may hand out
//     its addresses.
//
// forget is for the first run only, before any claim: later, a block
// just claimed may be in the store before the watch reports it.
// It returns what it found wrong and could not fix, one line each, so the
// caller can log each problem once.
func (d *Daemon) syncLocalBlocks(v *view, forget bool) ([]string, error) {
	st, err := ipam.Open(ipam.PathIn(d.dataDir), storeTimeout)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var problems []string
	var errs []error
	for _, n := range d.nets {
		for _, z := range n.conf.Zones {
			local, err := st.Blocks(n.conf.Name, z.Name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			have := map[netip.Prefix]bool{}
			for _, b := range local {
				have[b] = true
				owner := "nobody"
				if cb, ok := v.blocks[blockID{n.conf.Name, b}]; ok {
					if cb.Node == d.cfg.NodeName {
						continue
					}
					owner = "node " + cb.Node
				}
				if !forget {
					problems = append(problems, fmt.Sprintf("block %s of zone %s (network %s) is recorded on this node, but the cluster gives it to %s",
						b, z.Name, n.conf.Name, owner))
					continue
				}
				err := st.RemoveBlock(n.conf.Name, z.Name, b)
				var inUse *ipam.BlockInUseError
				switch {
				case errors.As(err, &inUse):
					problems = append(problems, fmt.Sprintf(
						"block %s of zone %s (network %s) is recorded on this node and %d containers have addresses in it, but the cluster gives it to %s: peers do not route it here",
						b, z.Name, n.conf.Name, inUse.Leases, owner))
				case err != nil:
					errs = append(errs, err)
				default:
					d.log.Warn("forgot a block the cluster no longer gives this node", "network", n.conf.Name, "zone", z.Name, "block", b, "owner", owner)
				}
			}
			for _, cb := range v.blocks {
				if cb.Node != d.cfg.NodeName || cb.Network != n.conf.Name || cb.Zone != z.Name || have[cb.Prefix] {
					continue
				}
				if !z.Subnet.Contains(cb.Prefix.Addr()) && !z.Subnet6.Contains(cb.Prefix.Addr()) {
					problems = append(problems, fmt.Sprintf("block %s of zone %s (network %s) in the cluster is outside the zone's subnets here %v: the conflists differ between nodes",
						cb.Prefix, z.Name, n.conf.Name, z.Prefixes()))
					continue
				}
				if err := st.AddBlock(n.conf.Name, z.Name, cb.Prefix); err != nil {
					errs = append(errs, err)
					continue
				}
				d.log.Info("recorded a block the cluster gives this node", "network", n.conf.Name, "zone", z.Name, "block", cb.Prefix)
			}
		}
	}
	return problems, errors.Join(errs...)
}
