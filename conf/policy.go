package conf

// The policy document: zones, default actions, allow rules on the
// five-tuple and per-zone limits. ParsePolicy turns the YAML or JSON a user
// wrote into a typed, validated Policy; policy_eval.go answers "may this
// flow pass?" from it, for the dataplane, the tests and `zonenetctl policy
// check` alike.
//
// Semantics the dataplane must implement (and Allows implements):
//   - Only new connections are judged; replies of an allowed connection
//     (conntrack established/related) always pass.
//   - Rules only allow. A flow passes if any rule matches it, otherwise the
//     default of its (source class, destination class) cell decides. So
//     rule order never changes a verdict; it only picks which rule name is
//     reported (the first match).
//   - Every address is in exactly one class: the host (a zone's gateway,
//     or a flow flagged as the node itself), a zone (inside its subnet), or
//     external (anything else). cidr and address selectors never match the
//     host: only the host selector does.
//   - Traffic with no zone on either side (host <-> external, external <->
//     external, host <-> host) is not zonenet's: it is neither allowed nor
//     denied by the policy.
//   - Ports are the container's ports after DNAT: a published port is
//     allowed by a rule on the container port it maps to.

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// MaxPolicySize bounds the policy document.
const MaxPolicySize = 1 << 20

// PolicyVersion is the only document version understood.
const PolicyVersion = 1

// Action is a default verdict.
type Action string

// The default verdicts.
const (
	Allow Action = "allow"
	Deny  Action = "deny"
)

// Protocol is a rule's protocol. ProtoICMP means ICMP for IPv4 and ICMPv6
// for IPv6.
type Protocol string

// The protocols.
const (
	ProtoTCP  Protocol = "tcp"
	ProtoUDP  Protocol = "udp"
	ProtoSCTP Protocol = "sctp"
	ProtoICMP Protocol = "icmp"
	ProtoAll  Protocol = "all"
)

// HasPorts reports whether the protocol has ports.
func (p Protocol) HasPorts() bool { return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP }

// RateAction is what happens to a source above the rate threshold.
type RateAction string

// The rate actions.
const (
	RateLog  RateAction = "log"  // log and count, let it through
	RateDrop RateAction = "drop" // log, count, and drop the source for BlockFor
)

// Policy defaults.
const (
	DefaultBlockFor = 10 * time.Minute
	// MaxBlockFor bounds how long a source can be blocked.
	MaxBlockFor = 7 * 24 * time.Hour
	// MaxConnectionsLimit bounds maxConnections.
	MaxConnectionsLimit = 10_000_000
)

// Policy is one validated policy document.
type Policy struct {
	Zones    []PolicyZone // the network's zones (or the policy's own, checked standalone)
	Defaults Defaults
	Rules    []Rule
}

// Defaults are the verdicts of flows no rule allows. IntraZone is the
// default of zones that do not set their own.
type Defaults struct {
	IntraZone    Action // zone -> same zone; default allow
	InterZone    Action // zone -> another zone; default deny
	ToExternal   Action // zone -> outside the zones; default deny
	FromExternal Action // outside -> zone; default deny
	ToHost       Action // zone -> the host itself (gateway, node addresses); default deny
	FromHost     Action // host -> zone (health checks, local published ports); default allow
}

// PolicyZone is a zone as the policy sees it.
type PolicyZone struct {
	Name     string
	Subnets  []netip.Prefix // IPv4 first
	Gateways []netip.Addr   // the host's addresses in the zone
	// IntraZone is the verdict between two containers of this zone.
	IntraZone Action
	Limits    Limits
}

// Limits hold per-container limits of a zone. Zero values mean no limit.
type Limits struct {
	// MaxConnections caps concurrent connections towards one container:
	// new ones beyond it are refused.
	MaxConnections int
	// Bandwidth is the per-container rate in bits per second, each way.
	Bandwidth uint64
	// RateLimit flags sources opening too many connections into the zone.
	RateLimit RateLimit
}

// RateLimit: a source address opening more than NewConnectionsPerMinute new
// connections a minute towards the zone's containers is logged and counted,
// and with RateDrop dropped for BlockFor. NewConnectionsPerMinute 0 means off.
type RateLimit struct {
	NewConnectionsPerMinute int
	Action                  RateAction
	BlockFor                time.Duration // set only with RateDrop
}

// Rule allows every flow from one of Sources to one of Destinations with
// one of Protocols.
type Rule struct {
	Name         string
	Sources      []Endpoint
	Destinations []Endpoint
	Protocols    []Protocol
}

// EndpointKind says what an endpoint selects.
type EndpointKind string

// The endpoint kinds.
const (
	EndpointZone     EndpointKind = "zone"
	EndpointCIDR     EndpointKind = "cidr"
	EndpointAddress  EndpointKind = "address"
	EndpointExternal EndpointKind = "external" // anything outside every zone
	EndpointHost     EndpointKind = "host"     // the node itself
)

// Endpoint is one side of a rule: a selector and optional ports.
type Endpoint struct {
	Kind   EndpointKind
	Zone   string       // EndpointZone
	Prefix netip.Prefix // EndpointCIDR; a single-address prefix for EndpointAddress
	Ports  []PortRange  // empty: any port
}

// String is the endpoint's selector as a user writes it.
func (e Endpoint) String() string {
	switch e.Kind {
	case EndpointZone:
		return e.Zone
	case EndpointCIDR:
		return e.Prefix.String()
	case EndpointAddress:
		return e.Prefix.Addr().String()
	}
	return string(e.Kind)
}

// PortRange is an inclusive range of ports; a single port has First == Last.
type PortRange struct{ First, Last uint16 }

// Contains reports whether port is in the range.
func (r PortRange) Contains(port uint16) bool { return r.First <= port && port <= r.Last }

func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// Zone returns the named zone of the policy, or nil.
func (p *Policy) Zone(name string) *PolicyZone {
	for i := range p.Zones {
		if p.Zones[i].Name == name {
			return &p.Zones[i]
		}
	}
	return nil
}

// Warning is something legal but probably not meant: a redundant rule, a
// setting that has no effect.
type Warning struct {
	Key string
	Msg string
}

func (w Warning) String() string { return w.Key + ": " + w.Msg }

// PolicyErrors is every error found in a policy document; each is an *Error.
type PolicyErrors []*Error

func (e PolicyErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find the first *Error.
func (e PolicyErrors) Unwrap() []error {
	out := make([]error, len(e))
	for i, err := range e {
		out[i] = err
	}
	return out
}

// ParsePolicy decodes (YAML or JSON), defaults and validates a policy
// document. zones are the network's zones from its configuration: rules
// name them, and a zone the policy restates must have the same subnets.
// With zones nil (a policy checked on its own) the policy's zones section
// is the list of zones and each entry needs its subnet(s).
//
// On failure the error is a PolicyErrors holding every problem found, each
// naming the key (e.g. `rules[3] (db-from-mgmt).destination.ports[0]`).
// Warnings are returned with a valid policy only.
func ParsePolicy(data []byte, zones []Zone) (*Policy, []Warning, error) {
	if len(data) > MaxPolicySize {
		return nil, nil, PolicyErrors{configErr("policy", "", "is %d bytes, more than the %d byte limit", len(data), MaxPolicySize)}
	}
	raw, err := decodePolicy(data)
	if err != nil {
		var ce *Error
		if !errors.As(err, &ce) {
			ce = &Error{Code: types.ErrDecodingFailure, Key: "policy", Msg: err.Error()}
		}
		return nil, nil, PolicyErrors{ce}
	}
	v := &policyValidator{p: &Policy{}}
	v.build(raw, zones)
	if len(v.errs) > 0 {
		return nil, nil, v.errs
	}
	v.warnRules()
	return v.p, v.warns, nil
}
