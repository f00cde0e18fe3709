package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// recordVersion is the layout of the JSON values below; a reader skips
// records of another version rather than misreading them.
const recordVersion = 1

// Node is a host of the cluster as it registered itself.
type Node struct {
	Name     string
	Underlay netip.Addr // where its VXLAN packets go
	VTEPMAC  string     // MAC of its VXLAN device, lower-case colon form
	// Registered is when the current record was written: the first
	// Register, or the last re-registration after the lease was lost.
	Registered time.Time
}

// Block is an address block of a zone's subnet, owned by one node.
type Block struct {
	Network string
	Zone    string
	Prefix  netip.Prefix
	Node    string
}

// Policy is the policy document of a network, stored as the operator
// wrote it (YAML or JSON); it is validated against the network's zones by
// whoever applies it.
type Policy struct {
	Network  string
	Doc      []byte
	Revision int64 // etcd revision of the last change
}

type nodeRecord struct {
	V          int        `json:"v"`
	Underlay   netip.Addr `json:"underlay"`
	VTEPMAC    string     `json:"vtepMAC"`
	Registered time.Time  `json:"registered"`
}

type blockRecord struct {
	V       int       `json:"v"`
	Zone    string    `json:"zone"`
	Node    string    `json:"node"`
	Claimed time.Time `json:"claimed"`
}

// subnetRecord fixes a subnet's zone and block size cluster-wide: all
// blocks of a subnet then have one size and alignment, so "the block key
// does not exist yet" is enough to know that no node owns any of its
// addresses.
type subnetRecord struct {
	V         int    `json:"v"`
	Zone      string `json:"zone"`
	BlockBits int    `json:"blockBits"`
}

type goneRecord struct {
	V     int       `json:"v"`
	Since time.Time `json:"since"`
}

var errRecordVersion = errors.New("unknown record version")

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs get here.
		panic(fmt.Sprintf("cluster: encode %T: %v", v, err))
	}
	return string(b)
}

// decode reads a record of this version into v (a pointer to a record
// type whose first field is V).
func decode(data []byte, v any, version *int) error {
	if err := json.Unmarshal(data, v); err != nil {
		return err
	}
	if *version != recordVersion {
		return fmt.Errorf("%w %d", errRecordVersion, *version)
	}
	return nil
}

func decodeNode(name string, data []byte) (Node, error) {
	var r nodeRecord
	if err := decode(data, &r, &r.V); err != nil {
		return Node{}, fmt.Errorf("node %s: %w", name, err)
	}
	return Node{Name: name, Underlay: r.Underlay, VTEPMAC: r.VTEPMAC, Registered: r.Registered}, nil
}

func decodeBlock(network string, p netip.Prefix, data []byte) (Block, error) {
	var r blockRecord
	if err := decode(data, &r, &r.V); err != nil {
		return Block{}, fmt.Errorf("block %s of network %s: %w", p, network, err)
	}
	if checkName(r.Node) != nil {
		return Block{}, fmt.Errorf("block %s of network %s: bad owner %q", p, network, r.Node)
	}
	return Block{Network: network, Zone: r.Zone, Prefix: p, Node: r.Node}, nil
}

// checkNode validates a node to register and returns it with its MAC in
// canonical form.
func checkNode(n Node) (Node, error) {
	if err := checkName(n.Name); err != nil {
		return n, fmt.Errorf("node: %w", err)
	}
	if !n.Underlay.IsValid() || n.Underlay.IsUnspecified() || n.Underlay.Zone() != "" {
		return n, fmt.Errorf("node %s: underlay address %q is not a usable unicast address", n.Name, n.Underlay)
	}
	n.Underlay = n.Underlay.Unmap()
	mac, err := net.ParseMAC(n.VTEPMAC)
	if err != nil || len(mac) != 6 {
		return n, fmt.Errorf("node %s: VTEP MAC %q is not an Ethernet address", n.Name, n.VTEPMAC)
	}
	n.VTEPMAC = mac.String()
	return n, nil
}
