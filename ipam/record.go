package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// recordVersion is the "v" of the attachment records this code writes.
// Readers reject versions they do not know instead of guessing.
const recordVersion = 1

// record is the stored form of an Attachment. It is separate from
// Attachment so the file format only changes on purpose. The key fields are
// kept in the value too, so a record can be read without its bucket key.
type record struct {
	V           int             `json:"v"`
	Network     string          `json:"network"`
	ContainerID string          `json:"containerID"`
	IfName      string          `json:"ifName"`
	Zone        string          `json:"zone,omitempty"`
	Mode        string          `json:"mode,omitempty"`
	IPs         []netip.Prefix  `json:"ips,omitempty"`
	HostVeth    string          `json:"hostVeth,omitempty"`
	Bridge      string          `json:"bridge,omitempty"`
	MAC         string          `json:"mac,omitempty"`
	Netns       string          `json:"netns,omitempty"`
	Delegated   string          `json:"delegated,omitempty"`
	Extra       json.RawMessage `json:"extra,omitempty"`
	Created     time.Time       `json:"created"`
}

func encodeRecord(a Attachment) ([]byte, error) {
	r := record{
		V:           recordVersion,
		Network:     a.Network,
		ContainerID: a.ContainerID,
		IfName:      a.IfName,
		Zone:        a.Zone,
		Mode:        a.Mode,
		IPs:         a.IPs,
		HostVeth:    a.HostVeth,
		Bridge:      a.Bridge,
		MAC:         a.MAC,
		Netns:       a.Netns,
		Delegated:   a.Delegated,
		Extra:       a.Extra,
		Created:     a.Created,
	}
	if len(r.Extra) != 0 && !json.Valid(r.Extra) {
		return nil, fmt.Errorf("attachment %s: extra data is not valid JSON", a.Key)
	}
	return json.Marshal(r)
}

func decodeRecord(b []byte) (Attachment, error) {
	// Peek at the version first: a future version may change any other field.
	var ver struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(b, &ver); err != nil {
		return Attachment{}, err
	}
	if ver.V != recordVersion {
		return Attachment{}, fmt.Errorf("record version %d not supported (want %d)", ver.V, recordVersion)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return Attachment{}, err
	}
	a := Attachment{
		Key:       Key{Network: r.Network, ContainerID: r.ContainerID, IfName: r.IfName},
		Zone:      r.Zone,
		Mode:      r.Mode,
		IPs:       r.IPs,
		HostVeth:  r.HostVeth,
		Bridge:    r.Bridge,
		MAC:       r.MAC,
		Netns:     r.Netns,
		Delegated: r.Delegated,
		Extra:     r.Extra, // json.RawMessage copies: safe past the bbolt tx
		Created:   r.Created,
	}
	return a, nil
}

func (k Key) String() string {
	return fmt.Sprintf("%s/%s/%s", k.Network, k.ContainerID, k.IfName)
}
