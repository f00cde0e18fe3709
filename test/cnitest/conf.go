//go:build linux

package cnitest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
)

// Zone is one entry of "zones" as users write it.
type Zone struct {
	Name       string   `json:"name"`
	Subnet     string   `json:"subnet,omitempty"`
	Subnet6    string   `json:"subnet6,omitempty"`
	Gateway    string   `json:"gateway,omitempty"`
	Gateway6   string   `json:"gateway6,omitempty"`
	Bridge     string   `json:"bridge,omitempty"`
	RangeStart string   `json:"rangeStart,omitempty"`
	RangeEnd   string   `json:"rangeEnd,omitempty"`
	Exclude    []string `json:"exclude,omitempty"`
}

// PortMapping is one entry of the portMappings capability.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// RuntimeConfig is the runtimeConfig a runtime injects for capabilities.
type RuntimeConfig struct {
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	IPs          []string      `json:"ips,omitempty"`
	MAC          string        `json:"mac,omitempty"`
}

// CNIArgs is the "args": {"cni": {...}} section.
type CNIArgs struct {
	Zone string   `json:"zone,omitempty"`
	IPs  []string `json:"ips,omitempty"`
	MAC  string   `json:"mac,omitempty"`
}

// Attachment is one entry of a GC list.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// NetConf is a zonenet plugin configuration as the plugin receives it
// (the plugin object with "name" and "cniVersion" injected). Extra holds
// keys merged in last, for tests of unusual input.
type NetConf struct {
	CNIVersion     string            `json:"cniVersion"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	Mode           string            `json:"mode,omitempty"`
	DataDir        string            `json:"dataDir,omitempty"`
	MTU            int               `json:"mtu,omitempty"`
	IPMasq         *bool             `json:"ipMasq,omitempty"`
	HairpinMode    bool              `json:"hairpinMode,omitempty"`
	DefaultZone    string            `json:"defaultZone,omitempty"`
	NamespaceZones map[string]string `json:"namespaceZones,omitempty"`
	Zones          []Zone            `json:"zones,omitempty"`
	Capabilities   map[string]bool   `json:"capabilities,omitempty"`
	RuntimeConfig  *RuntimeConfig    `json:"runtimeConfig,omitempty"`
	Args           *struct {
		CNI CNIArgs `json:"cni"`
	} `json:"args,omitempty"`
	IPAM             map[string]any  `json:"ipam,omitempty"`
	PrevResult       json.RawMessage `json:"prevResult,omitempty"`
	ValidAttachments *[]Attachment   `json:"cni.dev/valid-attachments,omitempty"`
	Extra            map[string]any  `json:"-"`
}

// Bool returns a pointer to b, for optional fields.
func Bool(b bool) *bool { return &b }

// SetArgs sets the "args": {"cni": ...} section.
func (c *NetConf) SetArgs(a CNIArgs) {
	c.Args = &struct {
		CNI CNIArgs `json:"cni"`
	}{CNI: a}
}

// JSON renders the configuration.
func (c NetConf) JSON(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("marshal netconf: %v", err)
	}
	if len(c.Extra) == 0 {
		return b
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range c.Extra {
		m[k] = v
	}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatalf("marshal netconf: %v", err)
	}
	return b
}

// WithPrev returns a copy of the configuration carrying prevResult, as a
// runtime sends it on CHECK and DEL.
func (c NetConf) WithPrev(prev []byte) NetConf {
	c.PrevResult = append(json.RawMessage(nil), prev...)
	return c
}

// WithGC returns a copy carrying the GC list.
func (c NetConf) WithGC(valid []Attachment) NetConf {
	if valid == nil {
		valid = []Attachment{}
	}
	c.ValidAttachments = &valid
	return c
}

// ParseResult parses stdout of an ADD with the types of version (so a 0.4.0
// result is read by the 0.4.0 types), checks that its cniVersion is
// version, and returns it converted to the 1.0.0 types for inspection.
func ParseResult(t testing.TB, version string, stdout []byte) *types100.Result {
	t.Helper()
	r, err := ParseResultErr(version, stdout)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ParseResultErr is ParseResult returning the error.
func ParseResultErr(version string, stdout []byte) (*types100.Result, error) {
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(stdout, &head); err != nil {
		return nil, fmt.Errorf("result is not JSON: %v\n%s", err, stdout)
	}
	if head.CNIVersion != version {
		return nil, fmt.Errorf("result cniVersion %q, want %q:\n%s", head.CNIVersion, version, stdout)
	}
	r, err := create.Create(version, stdout)
	if err != nil {
		return nil, fmt.Errorf("parse result with the %s types: %v\n%s", version, err, stdout)
	}
	if r.Version() != version {
		return nil, fmt.Errorf("parsed result has version %q, want %q", r.Version(), version)
	}
	r100, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("convert %s result: %v", version, err)
	}
	return r100, nil
}

// SandboxIface returns the index in r.Interfaces of the interface named
// ifName inside sandbox, or -1.
func SandboxIface(r *types100.Result, ifName, sandbox string) int {
	for i, ifc := range r.Interfaces {
		if ifc.Name == ifName && ifc.Sandbox == sandbox {
			return i
		}
	}
	return -1
}

// IsCode reports whether e carries one of the codes.
func IsCode(e *types.Error, codes ...uint) bool {
	if e == nil {
		return false
	}
	for _, c := range codes {
		if e.Code == c {
			return true
		}
	}
	return false
}
