package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// rawConf mirrors the JSON users write. Everything is kept as the user
// typed it until validation, so errors can quote the value.
type rawConf struct {
	CNIVersion     string            `json:"cniVersion"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	Mode           string            `json:"mode"`
	DataDir        string            `json:"dataDir"`
	MTU            int               `json:"mtu"`
	IPMasq         *bool             `json:"ipMasq"`
	HairpinMode    bool              `json:"hairpinMode"`
	DefaultZone    string            `json:"defaultZone"`
	NamespaceZones map[string]string `json:"namespaceZones"`
	Zones          []rawZone         `json:"zones"`
	Policy         string            `json:"policy"`
	DNS            DNS               `json:"dns"`
	Store          string            `json:"store"`
	DaemonSocket   string            `json:"daemonSocket"`
	BlockSize      *int              `json:"blockSize"`
	BlockSize6     *int              `json:"blockSize6"`
	IPAM           *struct {
		Type string `json:"type"`
	} `json:"ipam"`
	RuntimeConfig struct {
		PortMappings []rawPortMapping `json:"portMappings"`
		IPs          []string         `json:"ips"`
		MAC          string           `json:"mac"`
	} `json:"runtimeConfig"`
	Args struct {
		CNI struct {
			Zone string   `json:"zone"`
			IPs  []string `json:"ips"`
			MAC  string   `json:"mac"`
		} `json:"cni"`
	} `json:"args"`
	PrevResult       json.RawMessage `json:"prevResult"`
	ValidAttachments *[]Attachment   `json:"cni.dev/valid-attachments"`
	Attachments      *[]Attachment   `json:"cni.dev/attachments"`
}

type rawZone struct {
	Name       string   `json:"name"`
	Subnet     string   `json:"subnet"`
	Subnet6    string   `json:"subnet6"`
	Gateway    string   `json:"gateway"`
	Gateway6   string   `json:"gateway6"`
	Bridge     string   `json:"bridge"`
	RangeStart string   `json:"rangeStart"`
	RangeEnd   string   `json:"rangeEnd"`
	Exclude    []string `json:"exclude"`
}

type rawPortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP"`
}

// Parse decodes, defaults and validates one plugin configuration as a
// runtime hands it to the plugin (the plugin's object with name and
// cniVersion injected).
func Parse(data []byte) (*NetConf, error) { return parse(data, true) }

// ParseForTeardown is Parse for DEL, GC and STATUS: the per-container
// sections (runtimeConfig, args) are not read, so a container whose ADD
// was refused for one of them can still be deleted with the same config.
func ParseForTeardown(data []byte) (*NetConf, error) { return parse(data, false) }

func parse(data []byte, withRuntime bool) (*NetConf, error) {
	if len(data) > MaxConfigSize {
		return nil, configErr("config", "", "is %d bytes, more than the %d byte limit", len(data), MaxConfigSize)
	}
	var raw rawConf
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, &Error{Code: types.ErrDecodingFailure, Key: "config", Msg: "invalid JSON: " + jsonErrText(err)}
	}
	if dec.More() {
		return nil, &Error{Code: types.ErrDecodingFailure, Key: "config", Msg: "invalid JSON: data after the top-level object"}
	}
	return fromRaw(&raw, withRuntime)
}

func jsonErrText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("key %q must be %s, not %s", te.Field, te.Type, te.Value)
	}
	return err.Error()
}

func fromRaw(raw *rawConf, withRuntime bool) (*NetConf, error) {
	c := &NetConf{
		CNIVersion:     raw.CNIVersion,
		Name:           raw.Name,
		Type:           raw.Type,
		Mode:           Mode(raw.Mode),
		DataDir:        raw.DataDir,
		MTU:            raw.MTU,
		IPMasq:         true,
		HairpinMode:    raw.HairpinMode,
		DefaultZone:    raw.DefaultZone,
		NamespaceZones: raw.NamespaceZones,
		Policy:         raw.Policy,
		DNS:            raw.DNS,
		PrevResult:     raw.PrevResult,
	}
	if raw.IPMasq != nil {
		c.IPMasq = *raw.IPMasq
	}
	if raw.IPAM != nil && raw.IPAM.Type != "" && raw.IPAM.Type != "zonenet" {
		c.DelegateIPAM = raw.IPAM.Type
		if strings.ContainsAny(c.DelegateIPAM, "/\\") || c.DelegateIPAM == ".." {
			return nil, configErr("ipam.type", raw.IPAM.Type, "must be a plugin name, not a path")
		}
	}
	switch {
	case raw.ValidAttachments != nil:
		c.ValidAttachments = *raw.ValidAttachments
	case raw.Attachments != nil:
		c.ValidAttachments = *raw.Attachments
	}
	if err := c.defaultAndCheckTop(); err != nil {
		return nil, err
	}
	for i := range raw.Zones {
		z, err := parseZone(fmt.Sprintf("zones[%d]", i), &raw.Zones[i], c.Name)
		if err != nil {
			return nil, err
		}
		c.Zones = append(c.Zones, z)
	}
	if err := c.checkZones(); err != nil {
		return nil, err
	}
	if err := c.checkCluster(raw); err != nil {
		return nil, err
	}
	if !withRuntime {
		return c, nil
	}
	if err := c.parseRuntime(raw); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *NetConf) defaultAndCheckTop() error {
	if c.Name == "" {
		return configErr("name", "", "is required")
	}
	switch c.Mode {
	case "":
		c.Mode = ModeBridge
	case ModeBridge, ModeHost, ModeNone:
	default:
		return configErr("mode", string(c.Mode), "is not a mode: use bridge, host or none")
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if !filepath.IsAbs(c.DataDir) {
		return configErr("dataDir", c.DataDir, "must be an absolute path")
	}
	c.DataDir = filepath.Clean(c.DataDir)
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return configErr("mtu", fmt.Sprint(c.MTU), "must be between 576 and 65535 (or 0 for the kernel's default)")
	}
	return nil
}

func (c *NetConf) parseRuntime(raw *rawConf) error {
	for i, pm := range raw.RuntimeConfig.PortMappings {
		p, err := parsePortMapping(fmt.Sprintf("runtimeConfig.portMappings[%d]", i), pm)
		if err != nil {
			return err
		}
		c.Runtime.PortMappings = append(c.Runtime.PortMappings, p)
	}
	var err error
	if c.Runtime.IPs, err = parseIPList("runtimeConfig.ips", raw.RuntimeConfig.IPs); err != nil {
		return err
	}
	if c.Runtime.MAC, err = parseMAC("runtimeConfig.mac", raw.RuntimeConfig.MAC, configErr); err != nil {
		return err
	}
	a := raw.Args.CNI
	c.CNIArgs.Zone = a.Zone
	if c.CNIArgs.IPs, err = parseIPList("args.cni.ips", a.IPs); err != nil {
		return err
	}
	if c.CNIArgs.MAC, err = parseMAC("args.cni.mac", a.MAC, configErr); err != nil {
		return err
	}
	if a.Zone != "" && c.Zone(a.Zone) == nil {
		return configErr("args.cni.zone", a.Zone, "is not a zone of network %s (zones: %s)", c.Name, c.zoneNames())
	}
	return nil
}

func parsePortMapping(key string, pm rawPortMapping) (PortMapping, error) {
	p := PortMapping{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: strings.ToLower(pm.Protocol)}
	if p.Protocol == "" {
		p.Protocol = "tcp"
	}
	if p.Protocol != "tcp" && p.Protocol != "udp" && p.Protocol != "sctp" {
		return p, configErr(key+".protocol", pm.Protocol, "must be tcp, udp or sctp")
	}
	if p.HostPort < 1 || p.HostPort > 65535 {
		return p, configErr(key+".hostPort", fmt.Sprint(pm.HostPort), "must be between 1 and 65535")
	}
	if p.ContainerPort < 1 || p.ContainerPort > 65535 {
		return p, configErr(key+".containerPort", fmt.Sprint(pm.ContainerPort), "must be between 1 and 65535")
	}
	if pm.HostIP != "" {
		ip, err := netip.ParseAddr(pm.HostIP)
		if err != nil {
			return p, configErr(key+".hostIP", pm.HostIP, "is not an IP address")
		}
		p.HostIP = ip.Unmap()
	}
	return p, nil
}

// parseIPList accepts "10.0.1.7" and "10.0.1.7/24" (the ips capability
// uses the CIDR form); only the address is kept.
func parseIPList(key string, in []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for i, s := range in {
		ip, err := parseIPOrCIDR(s)
		if err != nil {
			return nil, configErr(fmt.Sprintf("%s[%d]", key, i), s, "is not an IP address")
		}
		out = append(out, ip)
	}
	return out, nil
}

func parseIPOrCIDR(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Addr{}, err
		}
		return p.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err
}

func parseMAC(key, s string, mk func(k, v, f string, a ...any) *Error) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, mk(key, s, "is not a 6-byte MAC address")
	}
	if mac[0]&1 == 1 {
		return nil, mk(key, s, "is a multicast MAC address")
	}
	return mac, nil
}
