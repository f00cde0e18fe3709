package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"sigs.k8s.io/yaml"
)

// The raw policy mirrors the document as written. Zones and rules stay raw
// until each is decoded on its own, so a decoding error can name the rule.
type rawPolicy struct {
	Version  *int              `json:"version"`
	Zones    []json.RawMessage `json:"zones"`
	Defaults rawDefaults       `json:"defaults"`
	Rules    []json.RawMessage `json:"rules"`
}

type rawDefaults struct {
	IntraZone    string     `json:"intraZone"`
	InterZone    string     `json:"interZone"`
	ToExternal   string     `json:"toExternal"`
	FromExternal string     `json:"fromExternal"`
	ToHost       string     `json:"toHost"`
	FromHost     string     `json:"fromHost"`
	Limits       *rawLimits `json:"limits"`
}

type rawPolicyZone struct {
	Name      string     `json:"name"`
	Subnet    string     `json:"subnet"`
	Subnet6   string     `json:"subnet6"`
	IntraZone string     `json:"intraZone"`
	Limits    *rawLimits `json:"limits"`
}

type rawLimits struct {
	MaxConnections *int          `json:"maxConnections"`
	Bandwidth      *rawScalar    `json:"bandwidth"`
	RateLimit      *rawRateLimit `json:"rateLimit"`
}

type rawRateLimit struct {
	NewConnectionsPerMinute int    `json:"newConnectionsPerMinute"`
	Action                  string `json:"action"`
	BlockFor                string `json:"blockFor"`
}

type rawRule struct {
	Name        string                 `json:"name"`
	Source      oneOrMany[rawEndpoint] `json:"source"`
	Destination oneOrMany[rawEndpoint] `json:"destination"`
	Protocol    oneOrMany[string]      `json:"protocol"`
}

// rawEndpoint is either a string ("frontend", "10.0.3.10", "10.0.0.0/8",
// "external", "host") or an object with one selector key and ports.
type rawEndpoint struct {
	Short    string               `json:"-"`
	IsShort  bool                 `json:"-"`
	Zone     string               `json:"zone"`
	CIDR     string               `json:"cidr"`
	Address  string               `json:"address"`
	External bool                 `json:"external"`
	Host     bool                 `json:"host"`
	Ports    oneOrMany[rawScalar] `json:"ports"`
}

func (e *rawEndpoint) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		e.IsShort = true
		return json.Unmarshal(b, &e.Short)
	}
	if len(b) == 0 || b[0] != '{' {
		return errors.New("an endpoint is a zone name, an address, a CIDR, external, host, or an object with one of those keys and ports")
	}
	type plain rawEndpoint
	return strictUnmarshal(b, (*plain)(e))
}

// rawScalar is a number or a string, kept as text: a port (443, "443",
// "8000-8080") or a rate (0, "100Mbit").
type rawScalar struct{ Text string }

func (p *rawScalar) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &p.Text)
	}
	if len(b) == 0 || !(b[0] == '-' || b[0] >= '0' && b[0] <= '9') {
		return errors.New("ports and rates are numbers or strings, such as 443, \"8000-8080\" or \"100Mbit\"")
	}
	p.Text = string(b)
	return nil
}

// oneOrMany accepts one value or a list of them; List records which, so
// keys can be written the way the user wrote the document.
type oneOrMany[T any] struct {
	Items []T
	List  bool
}

func (o *oneOrMany[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		o.List = true
		o.Items = []T{}
		return strictUnmarshal(b, &o.Items)
	}
	var one T
	if err := strictUnmarshal(b, &one); err != nil {
		return err
	}
	o.Items = []T{one}
	return nil
}

// key is the key of item i: "base[i]" for a list, "base" for a single value.
func (o *oneOrMany[T]) key(base string, i int) string {
	if o.List {
		return fmt.Sprintf("%s[%d]", base, i)
	}
	return base
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the value")
	}
	return nil
}

// decodePolicy reads JSON (a document starting with '{') or YAML. YAML is
// converted to JSON first (duplicate keys refused), so both forms go
// through the same strict decoding.
func decodePolicy(data []byte) (*rawPolicy, error) {
	trimmed := bytes.TrimSpace(data)
	js := trimmed
	if len(trimmed) == 0 || trimmed[0] != '{' {
		var err error
		if js, err = yaml.YAMLToJSONStrict(data); err != nil {
			return nil, &Error{Code: types.ErrDecodingFailure, Key: "policy", Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")}
		}
	}
	if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, &Error{Code: types.ErrDecodingFailure, Key: "policy", Msg: "is empty"}
	}
	var raw rawPolicy
	if err := strictUnmarshal(js, &raw); err != nil {
		return nil, &Error{Code: types.ErrDecodingFailure, Key: "policy", Msg: decodeErrText(err)}
	}
	return &raw, nil
}

func decodeErrText(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("key %q must be %s, not %s", te.Field, jsonTypeName(te.Type.Kind().String()), te.Value)
	case errors.As(err, &te):
		return fmt.Sprintf("must be %s, not %s", jsonTypeName(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return "invalid JSON: " + se.Error()
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "a list"
	case "struct", "map":
		return "an object"
	case "int", "int64", "uint16", "float64":
		return "a number"
	}
	return kind
}

// parsePortRange parses "443" or "8000-8080"; port 0 is refused.
func parsePortRange(s string) (PortRange, string) {
	first, last, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, errA := parsePort(first)
	b := a
	var errB string
	if isRange {
		b, errB = parsePort(last)
	}
	switch {
	case errA != "":
		return PortRange{}, errA
	case errB != "":
		return PortRange{}, errB
	case a > b:
		return PortRange{}, fmt.Sprintf("is not a port range: %d is after %d", a, b)
	}
	return PortRange{First: a, Last: b}, ""
}

func parsePort(s string) (uint16, string) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, "is not a port or port range (a number 1-65535, or \"first-last\")"
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Sprintf("port %d is out of range 1-65535", n)
	}
	return uint16(n), ""
}

// parseBandwidth parses a rate such as "100Mbit" (SI units, as tc writes
// them) into bits per second. "0" means no limit.
func parseBandwidth(s string) (uint64, string) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "0" {
		return 0, ""
	}
	units := []struct {
		suffix string
		mult   float64
	}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	for _, u := range units {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, "is not a rate such as 100Mbit"
		}
		bps := f * u.mult
		if bps < 1e3 || bps > 1e12 {
			return 0, "must be between 1kbit and 1Tbit (or 0 for no limit)"
		}
		return uint64(bps), ""
	}
	if strings.HasSuffix(t, "bps") || strings.HasSuffix(t, "b/s") {
		return 0, "needs a unit in bits: bit, kbit, Mbit, Gbit (e.g. 100Mbit)"
	}
	return 0, "needs a unit: bit, kbit, Mbit, Gbit or Tbit (e.g. 100Mbit)"
}

// validRuleName: 1-63 of A-Z a-z 0-9 . _ -, starting with a letter or
// digit. Rule names end up in iptables comments and log prefixes.
func validRuleName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '.' && c != '_' && c != '-')) {
			return false
		}
	}
	return true
}
