package conf

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// validZoneName: 1-32 of a-z 0-9 - _, starting and ending with a letter or
// digit. (Plain loops, not regexps: every plugin exec pays for init.)
func validZoneName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && ((c != '-' && c != '_') || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// validIfName: 1-15 of A-Z a-z 0-9 _ . -, and not "." or "..".
func validIfName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func parseZone(key string, rz *rawZone, network string) (Zone, error) {
	z := Zone{Name: rz.Name, Bridge: rz.Bridge}
	if !validZoneName(z.Name) {
		return z, configErr(key+".name", z.Name, "must be 1-32 lower-case letters, digits, '-' or '_'")
	}
	key = fmt.Sprintf("%s (%s)", key, z.Name)
	var err error
	if rz.Subnet != "" {
		if z.Subnet, err = parseSubnet(key+".subnet", rz.Subnet, false); err != nil {
			return z, err
		}
	}
	if rz.Subnet6 != "" {
		if z.Subnet6, err = parseSubnet(key+".subnet6", rz.Subnet6, true); err != nil {
			return z, err
		}
	}
	if !z.Subnet.IsValid() && !z.Subnet6.IsValid() {
		return z, configErr(key+".subnet", "", "is required (or subnet6 for an IPv6-only zone)")
	}
	if z.Gateway, err = parseGateway(key+".gateway", rz.Gateway, z.Subnet); err != nil {
		return z, err
	}
	if z.Gateway6, err = parseGateway(key+".gateway6", rz.Gateway6, z.Subnet6); err != nil {
		return z, err
	}
	if err := z.parseRange(key, rz); err != nil {
		return z, err
	}
	for i, s := range rz.Exclude {
		k := fmt.Sprintf("%s.exclude[%d]", key, i)
		a, err := netip.ParseAddr(s)
		if err != nil {
			return z, configErr(k, s, "is not an IP address")
		}
		a = a.Unmap()
		if !z.Subnet.Contains(a) && !z.Subnet6.Contains(a) {
			return z, configErr(k, s, "is outside the zone's subnets")
		}
		z.Exclude = append(z.Exclude, a)
	}
	if z.Bridge == "" {
		z.Bridge = BridgeName(network, z.Name)
	} else if !validIfName(z.Bridge) {
		return z, configErr(key+".bridge", z.Bridge, "must be a valid interface name of at most 15 characters")
	}
	return z, nil
}

func parseSubnet(key, s string, want6 bool) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, configErr(key, s, "is not a CIDR subnet")
	}
	if p.Addr().Is4In6() {
		return p, configErr(key, s, "is an IPv4-mapped subnet; write it as IPv4")
	}
	if p.Addr().Is6() != want6 {
		if want6 {
			return p, configErr(key, s, "must be an IPv6 subnet (use subnet for IPv4)")
		}
		return p, configErr(key, s, "must be an IPv4 subnet (use subnet6 for IPv6)")
	}
	if p.Masked() != p {
		return p, configErr(key, s, "has host bits set; did you mean %s?", p.Masked())
	}
	if max := p.Addr().BitLen() - 2; p.Bits() > max {
		return p, configErr(key, s, "is too small: a zone needs a gateway and at least one address (/%d at most)", max)
	}
	return p, nil
}

func parseGateway(key, s string, subnet netip.Prefix) (netip.Addr, error) {
	if !subnet.IsValid() {
		if s != "" {
			return netip.Addr{}, configErr(key, s, "is set but the zone has no subnet of that family")
		}
		return netip.Addr{}, nil
	}
	if s == "" {
		return subnet.Addr().Next(), nil
	}
	gw, err := netip.ParseAddr(s)
	if err != nil {
		return gw, configErr(key, s, "is not an IP address")
	}
	gw = gw.Unmap()
	if !subnet.Contains(gw) {
		return gw, configErr(key, s, "is outside the subnet %s", subnet)
	}
	if gw == subnet.Addr() || (gw.Is4() && gw == lastAddr(subnet)) {
		return gw, configErr(key, s, "is the network or broadcast address of %s", subnet)
	}
	return gw, nil
}

// parseRange applies rangeStart/rangeEnd to the pool of their family and
// defaults the bounds: first usable address to last usable address.
func (z *Zone) parseRange(key string, rz *rawZone) error {
	if z.Subnet.IsValid() {
		z.RangeStart, z.RangeEnd = z.Subnet.Addr().Next(), lastAddr(z.Subnet).Prev()
	}
	if z.Subnet6.IsValid() {
		z.RangeStart6, z.RangeEnd6 = z.Subnet6.Addr().Next(), lastAddr(z.Subnet6)
	}
	for _, f := range []struct {
		key, val string
		end      bool
	}{{key + ".rangeStart", rz.RangeStart, false}, {key + ".rangeEnd", rz.RangeEnd, true}} {
		if f.val == "" {
			continue
		}
		a, err := netip.ParseAddr(f.val)
		if err != nil {
			return configErr(f.key, f.val, "is not an IP address")
		}
		a = a.Unmap()
		sub := z.Subnet
		if a.Is6() {
			sub = z.Subnet6
		}
		if !sub.Contains(a) {
			return configErr(f.key, f.val, "is outside the zone's subnet %s", subnetText(sub))
		}
		if a == sub.Addr() || (a.Is4() && a == lastAddr(sub)) {
			return configErr(f.key, f.val, "is the network or broadcast address of %s", sub)
		}
		switch {
		case a.Is4() && f.end:
			z.RangeEnd = a
		case a.Is4():
			z.RangeStart = a
		case f.end:
			z.RangeEnd6 = a
		default:
			z.RangeStart6 = a
		}
	}
	if z.Subnet.IsValid() && z.RangeStart.Compare(z.RangeEnd) > 0 {
		return configErr(key+".rangeStart", z.RangeStart.String(), "is after rangeEnd %s", z.RangeEnd)
	}
	if z.Subnet6.IsValid() && z.RangeStart6.Compare(z.RangeEnd6) > 0 {
		return configErr(key+".rangeStart", z.RangeStart6.String(), "is after rangeEnd %s", z.RangeEnd6)
	}
	return nil
}

func subnetText(p netip.Prefix) string {
	if !p.IsValid() {
		return "(none of that family)"
	}
	return p.String()
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// checkZones validates what spans zones: unique names and bridges, no
// overlapping subnets, and that every zone reference points at a zone.
func (c *NetConf) checkZones() error {
	if len(c.Zones) == 0 && c.Mode == ModeBridge && c.DelegateIPAM == "" {
		return configErr("zones", "", "bridge mode needs at least one zone")
	}
	names := map[string]bool{}
	bridges := map[string]string{}
	for i, z := range c.Zones {
		if names[z.Name] {
			return configErr(fmt.Sprintf("zones[%d].name", i), z.Name, "is used by two zones")
		}
		names[z.Name] = true
		if other, ok := bridges[z.Bridge]; ok {
			return configErr(fmt.Sprintf("zones[%d].bridge", i), z.Bridge, "is also the bridge of zone %s", other)
		}
		bridges[z.Bridge] = z.Name
		for _, o := range c.Zones[:i] {
			for _, p := range z.Prefixes() {
				for _, q := range o.Prefixes() {
					if p.Overlaps(q) {
						return configErr(fmt.Sprintf("zones[%d] (%s).subnet", i, z.Name), p.String(),
							"overlaps %s of zone %s", q, o.Name)
					}
				}
			}
		}
	}
	if c.DefaultZone != "" && c.Zone(c.DefaultZone) == nil {
		return configErr("defaultZone", c.DefaultZone, "is not a zone of network %s (zones: %s)", c.Name, c.zoneNames())
	}
	keys := make([]string, 0, len(c.NamespaceZones))
	for k := range c.NamespaceZones {
		keys = append(keys, k)
	}
	for _, k := range sortedStrings(keys) {
		if c.Zone(c.NamespaceZones[k]) == nil {
			return configErr("namespaceZones."+k, c.NamespaceZones[k], "is not a zone of network %s (zones: %s)", c.Name, c.zoneNames())
		}
	}
	return nil
}

// Zone returns the named zone, or nil.
func (c *NetConf) Zone(name string) *Zone {
	for i := range c.Zones {
		if c.Zones[i].Name == name {
			return &c.Zones[i]
		}
	}
	return nil
}

func (c *NetConf) zoneNames() string {
	n := make([]string, len(c.Zones))
	for i, z := range c.Zones {
		n[i] = z.Name
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// SelectZone picks a container's zone: args.cni.zone, CNI_ARGS ZONE=, the
// namespaceZones entry of K8S_POD_NAMESPACE, defaultZone, the first zone.
func (c *NetConf) SelectZone(a Args) (*Zone, error) {
	switch {
	case c.CNIArgs.Zone != "":
		return c.Zone(c.CNIArgs.Zone), nil // checked at parse time
	case a.Zone != "":
		if z := c.Zone(a.Zone); z != nil {
			return z, nil
		}
		return nil, envErr("CNI_ARGS ZONE", a.Zone, "is not a zone of network %s (zones: %s)", c.Name, c.zoneNames())
	}
	if zn, ok := c.NamespaceZones[a.PodNamespace]; ok && a.PodNamespace != "" {
		return c.Zone(zn), nil
	}
	if c.DefaultZone != "" {
		return c.Zone(c.DefaultZone), nil
	}
	if len(c.Zones) == 0 {
		return nil, configErr("zones", "", "network %s has no zone", c.Name)
	}
	return &c.Zones[0], nil
}

// BridgeName derives a zone's bridge name from the network and zone names:
// readable, at most 15 characters, and distinct for distinct networks.
func BridgeName(network, zone string) string {
	h := sha256.Sum256([]byte(network + "\x00" + zone))
	short := zone
	if len(short) > 6 {
		short = short[:6]
	}
	return "zn" + short + "-" + hex.EncodeToString(h[:])[:6]
}
