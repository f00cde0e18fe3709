//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/zonenet/zonenet/conf"
)

// policyNetCmd writes the zonenet configuration for a run with a policy:
// the network's zones are the policy's own (a policy must restate its
// zones' subnets to be used here), every attachment goes to the first one,
// and the policy file is named by the "policy" key, so ADD installs it
// with the zone and adds each container's anti-spoofing chain.
//
// A run keeps up to -need attachments alive in that zone. When its IPv4
// subnet is too small for them, it alone is renumbered to a free /16 in a
// copy of the policy; rules and defaults stay as written, so the rules
// rendered into the kernel are the same.
func policyNetCmd(args []string) error {
	fs := flag.NewFlagSet("policy-net", flag.ContinueOnError)
	src := fs.String("policy", "", "policy file (YAML or JSON)")
	need := fs.Int("need", 0, "attachments alive at once in the first zone")
	bridges := fs.String("bridge-prefix", "", "bridge names: this prefix + the zone's index")
	dataDir := fs.String("data-dir", "", "zonenet dataDir")
	outConf := fs.String("conflist", "", "conflist to write")
	outPol := fs.String("policy-out", "", "where the policy the conflist names is written")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *src == "" || *bridges == "" || *dataDir == "" || *outConf == "" || *outPol == "" {
		return errors.New("policy-net: -policy, -bridge-prefix, -data-dir, -conflist and -policy-out are required")
	}
	data, err := os.ReadFile(*src)
	if err != nil {
		return err
	}
	pol, _, err := conf.ParsePolicy(data, nil)
	if err != nil {
		return fmt.Errorf("policy %s (its zones section must give every zone's subnet): %w", *src, err)
	}
	if len(pol.Zones) == 0 {
		return fmt.Errorf("policy %s has no zones", *src)
	}
	first := &pol.Zones[0]
	if v4 := firstV4(first.Subnets); v4.IsValid() && 1<<(32-v4.Bits())-3 < *need {
		to, err := freeSlash16(pol)
		if err != nil {
			return err
		}
		if data, err = renumberFirstZone(data, to); err != nil {
			return fmt.Errorf("policy %s: %w", *src, err)
		}
		if pol, _, err = conf.ParsePolicy(data, nil); err != nil {
			return fmt.Errorf("policy %s renumbered: %w", *src, err)
		}
		fmt.Fprintf(os.Stderr, "cnibench: zone %s of the policy renumbered %s -> %s to hold %d attachments; rules and defaults unchanged\n",
			first.Name, v4, to, *need)
	}
	if err := os.WriteFile(*outPol, data, 0o644); err != nil {
		return err
	}

	zones := make([]map[string]string, 0, len(pol.Zones))
	for i, z := range pol.Zones {
		m := map[string]string{"name": z.Name, "bridge": fmt.Sprintf("%s%d", *bridges, i)}
		for _, s := range z.Subnets {
			if s.Addr().Is4() {
				m["subnet"] = s.String()
			} else {
				m["subnet6"] = s.String()
			}
		}
		zones = append(zones, m)
	}
	list := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "bench",
		"plugins": []map[string]any{{
			"type": "zonenet", "mode": "bridge", "dataDir": *dataDir, "ipMasq": true,
			"policy": *outPol, "zones": zones,
		}},
	}
	raw, err := json.MarshalIndent(list, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(*outConf, raw, 0o644)
}

func firstV4(ps []netip.Prefix) netip.Prefix {
	for _, p := range ps {
		if p.Addr().Is4() {
			return p
		}
	}
	return netip.Prefix{}
}

// freeSlash16 finds a /16 in 10.100.0.0-10.199.255.255 that overlaps no
// zone and no address or CIDR a rule names, so renumbering changes no
// rule's meaning.
func freeSlash16(pol *conf.Policy) (netip.Prefix, error) {
	var used []netip.Prefix
	for _, z := range pol.Zones {
		used = append(used, z.Subnets...)
	}
	for _, r := range pol.Rules {
		for _, e := range append(append([]conf.Endpoint{}, r.Sources...), r.Destinations...) {
			if e.Prefix.IsValid() {
				used = append(used, e.Prefix)
			}
		}
	}
	for b := 100; b < 200; b++ {
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), 0, 0}), 16)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, errors.New("no free /16 in 10.100.0.0/16-10.199.0.0/16 to renumber the first zone into")
}

// renumberFirstZone returns the policy as JSON with zones[0].subnet
// replaced.
func renumberFirstZone(data []byte, to netip.Prefix) ([]byte, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, err
	}
	zs, _ := doc["zones"].([]any)
	if len(zs) == 0 {
		return nil, errors.New("no zones section to renumber")
	}
	z0, ok := zs[0].(map[string]any)
	if !ok {
		return nil, errors.New("zones[0] is not an object")
	}
	z0["subnet"] = to.String()
	return json.MarshalIndent(doc, "", " ")
}
