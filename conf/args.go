package conf

import (
	"net"
	"net/netip"
	"sort"
	"strings"
)

// Args are the CNI_ARGS zonenet understands.
type Args struct {
	Zone         string
	IPs          []netip.Addr
	MAC          net.HardwareAddr
	PodNamespace string
	PodName      string
}

// knownArgs are keys runtimes pass that zonenet accepts without using.
var knownArgs = map[string]bool{
	"IgnoreUnknown": true, "K8S_POD_NAME": true, "K8S_POD_NAMESPACE": true,
	"K8S_POD_INFRA_CONTAINER_ID": true, "K8S_POD_UID": true,
	"ZONE": true, "IP": true, "MAC": true,
}

// ParseArgs parses CNI_ARGS ("K1=V1;K2=V2"). Unknown keys are refused
// unless IgnoreUnknown is set, as the CNI conventions ask.
func ParseArgs(s string) (Args, error) {
	var a Args
	if s == "" {
		return a, nil
	}
	pairs := strings.Split(s, ";")
	kv := map[string]string{}
	for _, p := range pairs {
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return a, envErr("CNI_ARGS", p, "is not a KEY=VALUE pair")
		}
		kv[k] = v
	}
	ignore := strings.EqualFold(kv["IgnoreUnknown"], "true") || kv["IgnoreUnknown"] == "1"
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	for _, k := range sortedStrings(keys) {
		if !knownArgs[k] && !ignore {
			return a, envErr("CNI_ARGS "+k, kv[k], "is not an argument zonenet knows (set IgnoreUnknown=1 to pass it anyway)")
		}
	}
	a.Zone = kv["ZONE"]
	a.PodNamespace = kv["K8S_POD_NAMESPACE"]
	a.PodName = kv["K8S_POD_NAME"]
	if ips := kv["IP"]; ips != "" {
		for _, s := range strings.Split(ips, ",") {
			ip, err := parseIPOrCIDR(strings.TrimSpace(s))
			if err != nil {
				return a, envErr("CNI_ARGS IP", s, "is not an IP address")
			}
			a.IPs = append(a.IPs, ip)
		}
	}
	var err error
	if a.MAC, err = parseMAC("CNI_ARGS MAC", kv["MAC"], envErr); err != nil {
		return a, err
	}
	return a, nil
}

func sortedStrings(s []string) []string {
	sort.Strings(s)
	return s
}
