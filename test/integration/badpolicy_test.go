//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadPolicyApply: `zonenetctl policy apply` with each kind of bad
// policy exits non-zero, names the rule and field, and leaves the host's
// rules and sets exactly as the installed policy left them.
func TestBadPolicyApply(t *testing.T) {
	t.Parallel()
	e := policyEnv(t, openDefaults+"zones:\n  - name: %s\n")
	c := e.newCtr()
	e.add(c)
	z := e.conf.Zones[0].Name
	dir := t.TempDir()
	conflist := filepath.Join(dir, "net.conflist")
	if err := os.WriteFile(conflist, e.conf.JSON(t), 0o644); err != nil {
		t.Fatal(err)
	}
	rule := func(r string) string { return "version: 1\nrules:\n  - " + strings.ReplaceAll(r, "ZONE", z) + "\n" }
	cases := []struct{ name, doc, key string }{
		{"unknown zone", rule("{name: r1, source: nowhere, destination: ZONE, protocol: tcp}"), "rules[0] (r1).source"},
		{"port out of range", rule("{name: r2, source: ZONE, destination: {zone: ZONE, ports: [70000]}, protocol: tcp}"), "rules[0] (r2).destination.ports[0]"},
		{"cidr with host bits", rule("{name: r3, source: 192.0.2.7/24, destination: ZONE, protocol: tcp}"), "rules[0] (r3).source"},
		{"rule that can never match", rule("{name: r4, source: 192.0.2.0/24, destination: external, protocol: tcp}"), "rules[0] (r4)"},
		{"contradiction", rule("{name: r5, source: ZONE, destination: {zone: ZONE, ports: [80]}, protocol: icmp}"), "rules[0] (r5)"},
		{"bad limit", "version: 1\nzones:\n  - {name: " + z + ", limits: {maxConnections: -3}}\n", "maxConnections"},
	}
	before := e.snapshot()
	for _, tc := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
		if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := ctl(t, e, e.host, "policy", "apply", "--conflist", conflist, "--policy", path)
		if code == 0 {
			t.Errorf("%s: policy apply exited 0", tc.name)
		}
		if !strings.Contains(stderr, tc.key) {
			t.Errorf("%s: the error does not name %q:\n%s", tc.name, tc.key, stderr)
		}
		e.expectSame(before, "policy apply of a bad policy ("+tc.name+")")
	}
	e.del(c)
}
