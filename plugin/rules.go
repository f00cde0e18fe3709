package plugin

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/ipam"
)

// containerRules returns what the record says the attachment owns in
// iptables, if anything.
func containerRules(r *request, rec *ipam.Attachment) (acl.Container, bool) {
	var ct acl.Container
	if hp, ok := hostPorts(r, rec); ok {
		ct.Ports = &hp
	}
	if s, ok := spoofOf(rec); ok {
		ct.Spoof = &s
	}
	return ct, ct.Ports != nil || ct.Spoof != nil
}

// spoofOf returns the record's anti-spoofing chain, if it has one.
func spoofOf(rec *ipam.Attachment) (acl.Spoof, bool) {
	var x extra
	if len(rec.Extra) == 0 || json.Unmarshal(rec.Extra, &x) != nil || !x.Spoof || len(rec.IPs) == 0 {
		return acl.Spoof{}, false
	}
	mac, err := net.ParseMAC(rec.MAC)
	if err != nil {
		return acl.Spoof{}, false
	}
	s := acl.Spoof{Network: rec.Network, ContainerID: rec.ContainerID, IfName: rec.IfName,
		HostVeth: rec.HostVeth, MAC: mac}
	for _, p := range rec.IPs {
		s.IPs = append(s.IPs, p.Addr())
	}
	return s, true
}

// enableBridgeFilter makes bridged traffic, between two containers of a
// zone, pass through iptables, where the anti-spoofing chains are.
func enableBridgeFilter(ips []netip.Prefix) error {
	keys := []string{"net/bridge/bridge-nf-call-iptables"}
	if hasIPv6(ips) {
		keys = append(keys, "net/bridge/bridge-nf-call-ip6tables")
	}
	for _, k := range keys {
		if err := writeSysctl(k, "1"); err != nil {
			return fmt.Errorf("anti-spoofing needs br_netfilter: %w", err)
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
