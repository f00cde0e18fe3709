package conf

import (
	"fmt"
	"path/filepath"
)

// maxSocketPath is what fits in sun_path with its terminating NUL.
const maxSocketPath = 107

// checkCluster parses store, daemonSocket, blockSize and blockSize6. The
// last three only mean something in cluster mode, so they are defaulted
// and checked there only: switching a network between the stores is the
// one key "store", whatever else is left in the file.
func (c *NetConf) checkCluster(raw *rawConf) error {
	switch Store(raw.Store) {
	case "", StoreLocal:
		c.Store = StoreLocal
		return nil
	case StoreEtcd:
		c.Store = StoreEtcd
	default:
		return configErr("store", raw.Store, "is not a store: use local (one host) or etcd (cluster)")
	}
	if c.DelegateIPAM != "" {
		return configErr("ipam.type", c.DelegateIPAM,
			"cannot be used with store etcd: in cluster mode zonenet hands out addresses from the blocks this node claimed; remove ipam.type or use store local")
	}
	c.DaemonSocket = raw.DaemonSocket
	if c.DaemonSocket == "" {
		c.DaemonSocket = DefaultDaemonSocket
	}
	if !filepath.IsAbs(c.DaemonSocket) {
		return configErr("daemonSocket", c.DaemonSocket, "must be an absolute path")
	}
	c.DaemonSocket = filepath.Clean(c.DaemonSocket)
	if len(c.DaemonSocket) > maxSocketPath {
		return configErr("daemonSocket", c.DaemonSocket, "is longer than the %d bytes a unix socket path may have", maxSocketPath)
	}
	var err error
	if c.BlockSize, err = c.blockBits("blockSize", raw.BlockSize, DefaultBlockSize, 32); err != nil {
		return err
	}
	c.BlockSize6, err = c.blockBits("blockSize6", raw.BlockSize6, DefaultBlockSize6, 128)
	return err
}

// blockBits checks a block prefix length against every zone subnet of its
// family: a block is a strict part of a subnet (so nodes can share a
// zone) and holds at least 4 addresses (so a block is worth a claim).
func (c *NetConf) blockBits(key string, set *int, def, addrBits int) (int, error) {
	bits, how := def, fmt.Sprintf(" (%s is not set; %d is its default)", key, def)
	if set != nil {
		bits, how = *set, ""
	}
	val := fmt.Sprint(bits)
	if max := addrBits - 2; bits < 1 || bits > max {
		return 0, configErr(key, val, "must be a prefix length from 1 to %d, so that a block holds at least 4 addresses%s", max, how)
	}
	for i := range c.Zones {
		z := &c.Zones[i]
		sub, skey := z.Subnet, "subnet"
		if addrBits == 128 {
			sub, skey = z.Subnet6, "subnet6"
		}
		if sub.IsValid() && bits <= sub.Bits() {
			return 0, configErr(key, val, "is not longer than zones[%d] (%s).%s %s: a block must be a part of each zone's subnet%s",
				i, z.Name, skey, sub, how)
		}
	}
	return bits, nil
}
