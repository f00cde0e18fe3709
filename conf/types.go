// Package conf parses, defaults and validates zonenet's network
// configuration and CNI_ARGS into typed values. Nothing here touches the
// kernel, and nothing internal is imported: every other package depends on
// this one, not the other way round.
package conf

import (
	"encoding/json"
	"net"
	"net/netip"
)

// Mode is how a container is attached.
type Mode string

// The attachment modes.
const (
	ModeBridge Mode = "bridge"
	ModeHost   Mode = "host"
	ModeNone   Mode = "none"
)

// Store is where a network's addresses are coordinated.
type Store string

// The stores.
const (
	// StoreLocal: the node's own file is the whole truth; single host.
	StoreLocal Store = "local"
	// StoreEtcd: cluster mode. The node hands out addresses from blocks
	// of each zone that zonenetd claimed for it in etcd; the plugin itself
	// never talks to etcd, only (when its blocks are full) to zonenetd.
	StoreEtcd Store = "etcd"
)

// Defaults.
const (
	DefaultDataDir = "/var/lib/zonenet"
	// DefaultDaemonSocket is zonenetd's local endpoint.
	DefaultDaemonSocket = "/run/zonenet/zonenetd.sock"
	// DefaultBlockSize and DefaultBlockSize6 are the prefix lengths of the
	// blocks a node claims: 64 addresses for IPv4, as for IPv6.
	DefaultBlockSize  = 26
	DefaultBlockSize6 = 122
	// MaxConfigSize bounds the network configuration read from stdin.
	MaxConfigSize = 1 << 20
)

// NetConf is one validated zonenet plugin configuration.
type NetConf struct {
	CNIVersion     string
	Name           string
	Type           string
	Mode           Mode
	DataDir        string
	MTU            int // 0: leave the kernel's default
	IPMasq         bool
	HairpinMode    bool
	DefaultZone    string
	NamespaceZones map[string]string
	Zones          []Zone
	Policy         string
	DNS            DNS

	// Store is local (the default) or etcd (cluster mode). DaemonSocket,
	// BlockSize and BlockSize6 are set and checked in cluster mode only.
	Store        Store
	DaemonSocket string
	BlockSize    int // prefix length of an IPv4 block
	BlockSize6   int // prefix length of an IPv6 block

	// DelegateIPAM names another IPAM plugin (found through CNI_PATH)
	// that hands out addresses instead of the zones' own pools.
	DelegateIPAM string

	Runtime RuntimeConfig
	CNIArgs CNIArgsConf // "args": {"cni": {...}}

	// PrevResult is the raw prevResult, parsed by the plugin with the
	// CNI library for the configuration's version.
	PrevResult json.RawMessage
	// ValidAttachments is the GC list (cni.dev/valid-attachments or
	// cni.dev/attachments); nil when the key is absent.
	ValidAttachments []Attachment
}

// Cluster reports whether the network runs in cluster mode (store etcd).
func (c *NetConf) Cluster() bool { return c.Store == StoreEtcd }

// BlockBits is the prefix length of a block of subnet's family.
func (c *NetConf) BlockBits(subnet netip.Prefix) int {
	if subnet.Addr().Is4() {
		return c.BlockSize
	}
	return c.BlockSize6
}

// DNS is passed through to the result.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Zone is a named subnet with a role.
type Zone struct {
	Name     string
	Subnet   netip.Prefix // IPv4; invalid when the zone is IPv6 only
	Subnet6  netip.Prefix // IPv6; invalid when the zone is IPv4 only
	Gateway  netip.Addr
	Gateway6 netip.Addr
	Bridge   string
	// Range bounds per family, inclusive, already defaulted.
	RangeStart, RangeEnd   netip.Addr
	RangeStart6, RangeEnd6 netip.Addr
	Exclude                []netip.Addr
}

// Prefixes returns the zone's subnets, IPv4 first.
func (z *Zone) Prefixes() []netip.Prefix {
	var p []netip.Prefix
	if z.Subnet.IsValid() {
		p = append(p, z.Subnet)
	}
	if z.Subnet6.IsValid() {
		p = append(p, z.Subnet6)
	}
	return p
}

// GatewayFor returns the gateway of the family of a.
func (z *Zone) GatewayFor(a netip.Addr) netip.Addr {
	if a.Is4() {
		return z.Gateway
	}
	return z.Gateway6
}

// PortMapping is one entry of the portMappings capability.
type PortMapping struct {
	HostPort      int        `json:"hostPort"`
	ContainerPort int        `json:"containerPort"`
	Protocol      string     `json:"protocol"`
	HostIP        netip.Addr `json:"hostIP,omitzero"`
}

// RuntimeConfig holds the capabilities the runtime passed.
type RuntimeConfig struct {
	PortMappings []PortMapping
	IPs          []netip.Addr
	MAC          net.HardwareAddr
}

// CNIArgsConf is the "args": {"cni": {...}} section.
type CNIArgsConf struct {
	Zone string
	IPs  []netip.Addr
	MAC  net.HardwareAddr
}

// Attachment names one container interface in a GC list.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}
