package demo

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/zonenet/zonenet/conf"
)

// ReferencePolicy is the reference policy of deploy/policy-reference.yaml;
// demo/reference-policy.yaml is kept byte for byte identical to it (a test
// checks).
//
//go:embed reference-policy.yaml
var ReferencePolicy []byte

// DefaultPorts are the ports the demo probes: the reference policy opens
// 8080 from frontend to backend and 3306 from one mgmt address to backend.
var DefaultPorts = []int{8080, 3306}

// policyFile is the name of the policy inside the demo's data dir.
const policyFile = "policy.yaml"

// parsePolicy validates the policy document against the zones of the
// topology, as the plugin will when it reads the configuration.
func (t Topology) parsePolicy(data []byte) (*conf.Policy, error) {
	netconf, err := t.NetConf(os.TempDir(), filepath.Join(os.TempDir(), policyFile))
	if err != nil {
		return nil, err
	}
	c, err := conf.FromConfList(netconf)
	if err != nil {
		return nil, fmt.Errorf("demo configuration: %w", err)
	}
	pol, _, err := conf.ParsePolicy(data, c.Zones)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return pol, nil
}

// PolicyTable is the truth table of a policy for TCP connects to port: a
// connect the policy allows is OK, one it denies times out (the filter
// drops it). A nil policy allows everything.
func PolicyTable(pol *conf.Policy, port int) Policy {
	if pol == nil {
		return AllowAll
	}
	return func(src, dst Endpoint) Outcome {
		f := conf.Flow{Src: src.Addr, Dst: dst.Addr, Proto: conf.ProtoTCP, DstPort: uint16(port)}
		if dst.IsGateway {
			f.Dst = src.Gateway
		}
		if ok, _ := pol.Allows(f); ok {
			return OK
		}
		return Timeout
	}
}

// Policy returns the parsed policy the demo installs, nil for none.
func (d *Demo) Policy() *conf.Policy { return d.policy }

// Ports returns the ports every container listens on and the demo probes.
func (d *Demo) Ports() []int { return slices.Clone(d.cfg.Ports) }

// CheckPolicy validates a policy document against the reference topology's
// zones, as the plugin will.
func CheckPolicy(data []byte) error {
	_, err := Reference().parsePolicy(data)
	return err
}
