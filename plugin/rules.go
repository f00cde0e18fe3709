package plugin

import (
	"encoding/json"
	"fmt"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/ipam"
)

// enableBridgeFilter makes bridged traffic, between two containers of a
// zone, pass through iptables, where the anti-spoofing chain and an
// intra-zone policy are.
func enableBridgeFilter(ipv6 bool) error {
	keys := []string{"net/bridge/bridge-nf-call-iptables"}
	if ipv6 {
		keys = append(keys, "net/bridge/bridge-nf-call-ip6tables")
	}
	for _, k := range keys {
		if err := writeSysctl(k, "1"); err != nil {
			return fmt.Errorf("a policy needs br_netfilter: %w", err)
		}
	}
	return nil
}

// hostPorts returns the record's published ports, if it has any.
func hostPorts(r *request, rec *ipam.Attachment) (acl.HostPorts, bool) {
	var x extra
	if len(rec.Extra) == 0 || json.Unmarshal(rec.Extra, &x) != nil || len(x.PortMappings) == 0 {
		return acl.HostPorts{}, false
	}
	for _, ipn := range rec.IPs {
		if ipn.Addr().Is4() {
			return acl.HostPorts{Network: rec.Network, ContainerID: rec.ContainerID, IfName: rec.IfName,
				IP: ipn.Addr(), Mappings: x.PortMappings}, true
		}
	}
	return acl.HostPorts{}, false
}
