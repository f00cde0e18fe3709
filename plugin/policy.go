package plugin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
)

// LoadPolicy reads and validates the policy file named by path against the
// network's zones. Any problem is an invalid-configuration error (CNI code
// 7) naming the file; "" means no policy.
func LoadPolicy(c *conf.NetConf, path string) (*conf.Policy, error) {
	if path == "" {
		return nil, nil
	}
	bad := func(msg string) error {
		return &conf.Error{Code: types.ErrInvalidNetworkConfig, Key: "policy", Value: path, Msg: msg}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, bad(err.Error())
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, conf.MaxPolicySize+1))
	if err != nil {
		return nil, bad(err.Error())
	}
	pol, _, err := conf.ParsePolicy(data, c.Zones)
	if err != nil {
		return nil, bad(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return pol, nil
}

// applyPolicy installs a network's policy in the filter table. Bridged
// traffic between two containers of a zone is only seen by iptables with
// bridge-nf-call-iptables on, which a zone denying intra-zone traffic
// needs.
func (p *Plugin) applyPolicy(c *conf.NetConf, pol *conf.Policy) error {
	if pol == nil {
		return nil
	}
	for _, z := range pol.Zones {
		if z.IntraZone == conf.Deny {
			if err := writeSysctl("net/bridge/bridge-nf-call-iptables", "1"); err != nil {
				return fmt.Errorf("zone %s denies traffic inside the zone, which needs br_netfilter: %w", z.Name, err)
			}
			if hasIPv6Zone(pol) {
				if err := writeSysctl("net/bridge/bridge-nf-call-ip6tables", "1"); err != nil {
					return fmt.Errorf("zone %s denies traffic inside the zone, which needs br_netfilter: %w", z.Name, err)
				}
			}
			break
		}
	}
	if err := acl.ApplyFilter(p.IPT, c.Name, pol); err != nil {
		return fmt.Errorf("policy %s: %w", c.Policy, err)
	}
	return nil
}

func hasIPv6Zone(pol *conf.Policy) bool {
	for _, z := range pol.Zones {
		for _, s := range z.Subnets {
			if s.Addr().Is6() {
				return true
			}
		}
	}
	return false
}

// ApplyPolicy re-renders and installs the policy of the zonenet network of
// a conflist (or single plugin configuration) in the current network
// namespace, atomically per address family. policyPath, when not "",
// replaces the configuration's policy key.
func ApplyPolicy(r acl.Runner, conflist []byte, policyPath string) (*conf.Policy, error) {
	c, err := conf.FromConfList(conflist)
	if err != nil {
		return nil, err
	}
	if policyPath != "" {
		c.Policy = policyPath
	}
	if c.Policy == "" {
		return nil, errors.New(`the configuration has no "policy" key: name a policy file`)
	}
	pol, err := LoadPolicy(c, c.Policy)
	if err != nil {
		return nil, err
	}
	p := &Plugin{IPT: r}
	return pol, p.applyPolicy(c, pol)
}
