package plugin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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

// applyPolicy installs a network's policy when ADD sets a zone up. The
// policy file may have changed since another zone of the network began to
// carry traffic, so connections it now forbids are cut as by `zonenetctl
// policy apply`; failing to cut them does not fail the container's ADD,
// it is reported on stderr.
func (p *Plugin) applyPolicy(c *conf.NetConf, pol *conf.Policy) error {
	n, err := p.installPolicy(c, pol)
	var cut *conntrackError
	if errors.As(err, &cut) {
		if p.Stderr != nil {
			fmt.Fprintf(p.Stderr, "zonenet: %s: %v\n", c.Policy, err)
		}
		return nil
	}
	if n > 0 && p.Stderr != nil {
		fmt.Fprintf(p.Stderr, "zonenet: policy %s: cut %d tracked connections it forbids\n", c.Policy, n)
	}
	return err
}

// installPolicy installs a network's policy in the filter table and its
// anti-spoofing chain and sets, then deletes the conntrack entries of the
// connections it forbids, and returns how many. Bridged traffic (between
// two containers of a zone, and everything anti-spoofing judges) is only
// seen by iptables with bridge-nf-call-iptables on.
func (p *Plugin) installPolicy(c *conf.NetConf, pol *conf.Policy) (int, error) {
	if pol == nil {
		return 0, nil
	}
	if err := enableBridgeFilter(hasIPv6Zone(pol)); err != nil {
		return 0, err
	}
	if err := acl.ApplyFilter(p.IPT, c.Name, pol); err != nil {
		return 0, fmt.Errorf("policy %s: %w", c.Policy, err)
	}
	if err := acl.ApplyGuard(p.IPT, p.Sets, c.Name, guardZones(c)); err != nil {
		return 0, fmt.Errorf("anti-spoofing of network %s: %w", c.Name, err)
	}
	if p.Conntrack == nil {
		return 0, nil
	}
	// Only after the commit: see acl/conntrack.go.
	n, err := acl.FlushForbidden(p.Conntrack, pol)
	if err != nil {
		return n, &conntrackError{err}
	}
	return n, nil
}

// conntrackError: the policy's rules are in place, but some connections it
// forbids may still be running.
type conntrackError struct{ err error }

func (e *conntrackError) Error() string {
	return "policy installed, but connections it forbids may still be running: " + e.err.Error()
}

func (e *conntrackError) Unwrap() error { return e.err }

// policyIntact reports whether a network without a policy, or whose
// anti-spoofing sets are still used by rules, needs no repair. A flushed
// filter table leaves the sets unreferenced; the policy's chains then go
// with them, and the zone setup reinstalls both.
func (p *Plugin) policyIntact(c *conf.NetConf) bool {
	if c.Policy == "" {
		return true
	}
	ok, err := acl.GuardIntact(p.Sets, c.Name, guardZones(c))
	return ok && err == nil
}

// repairPolicy reinstalls a network's policy when any of its chains or
// jumps is gone (a flushed table, a firewall reload): CHECK repairs what
// it can rather than only report it.
func (p *Plugin) repairPolicy(c *conf.NetConf) error {
	if c.Policy == "" {
		return nil
	}
	var fams []acl.Family
	for _, z := range c.Zones {
		if z.Subnet.IsValid() && !slices.Contains(fams, acl.IPv4) {
			fams = append(fams, acl.IPv4)
		}
		if z.Subnet6.IsValid() && !slices.Contains(fams, acl.IPv6) {
			fams = append(fams, acl.IPv6)
		}
	}
	ok, err := acl.PolicyInstalled(p.IPT, c.Name, fams)
	if err != nil || (ok && p.policyIntact(c)) {
		return err
	}
	pol, err := LoadPolicy(c, c.Policy)
	if err != nil {
		return err
	}
	p.warnf("policy of network %s was missing from iptables: reinstalled", c.Name)
	return p.applyPolicy(c, pol)
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
// namespace, atomically per address family, then deletes from ct the
// entries of the connections the policy forbids (ct nil: none), so they
// stop; it returns the policy and how many entries it deleted. policyPath,
// when not "", replaces the configuration's policy key.
func ApplyPolicy(r acl.Runner, ct acl.ConntrackTable, conflist []byte, policyPath string) (*conf.Policy, int, error) {
	c, err := conf.FromConfList(conflist)
	if err != nil {
		return nil, 0, err
	}
	if policyPath != "" {
		c.Policy = policyPath
	}
	if c.Policy == "" {
		return nil, 0, errors.New(`the configuration has no "policy" key: name a policy file`)
	}
	pol, err := LoadPolicy(c, c.Policy)
	if err != nil {
		return nil, 0, err
	}
	p := &Plugin{IPT: r, Sets: acl.NetlinkSets{}, Conntrack: ct}
	n, err := p.installPolicy(c, pol)
	return pol, n, err
}
