package ipam

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Pool is one address family's pool of a zone.
type Pool struct {
	Subnet  netip.Prefix // masked, e.g. 10.0.1.0/24 or fd00:0:3::/64
	Gateway netip.Addr   // reserved, never handed out (invalid = none)
	Start   netip.Addr   // first assignable, inclusive
	End     netip.Addr   // last assignable, inclusive
	Exclude []netip.Addr // never handed out
}

// Zone is what the allocator needs to know of a zone: its name and its
// pools (one IPv4 and/or one IPv6).
type Zone struct {
	Name  string
	Pools []Pool
}

// Key identifies an attachment: (network name, container ID, interface name).
type Key struct{ Network, ContainerID, IfName string }

// Attachment is the record of one container interface. The plugin fills all
// fields except IPs before Allocate.
type Attachment struct {
	Key
	Zone      string
	Mode      string         // bridge|host|none
	IPs       []netip.Prefix // address + zone subnet prefix length, e.g. 10.0.1.5/24
	HostVeth  string
	Bridge    string
	MAC       string
	Netns     string
	Delegated string          // non-empty: name of a delegated IPAM plugin that owns the IPs
	Extra     json.RawMessage // opaque per-attachment data of the plugin (port mappings etc.)
	Created   time.Time
}

// Request asks Allocate for one address per pool of a zone.
type Request struct {
	Attachment              // record to store (IPs ignored)
	Pools      []Pool       // the zone's pools
	Static     []netip.Addr // requested addresses (0..n); each must fall in one pool of the zone
	// InBlocks (cluster mode) hands out addresses only inside the zone's
	// blocks recorded in this store, static ones included; a pool whose
	// blocks are full fails with a *BlocksFullError.
	InBlocks bool
}

// PoolUsage is the occupancy of one pool.
type PoolUsage struct {
	Subnet netip.Prefix
	// Size is the number of assignable addresses: the range minus the
	// network, broadcast, gateway and excluded addresses, saturating at
	// math.MaxUint64 (an IPv6 /64 has 2^64 addresses).
	Size uint64
	// Used is the number of leased addresses inside the assignable range.
	Used uint64
}
