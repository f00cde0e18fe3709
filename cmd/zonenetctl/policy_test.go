package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	refPolicy   = "../../deploy/policy-reference.yaml"
	refConflist = "../../deploy/10-zonenet.conflist"
	brokenPol   = "../../conf/testdata/policy/broken.yaml"
)

func TestPolicyCheckReference(t *testing.T) {
	for _, args := range [][]string{
		{"policy", "check", refPolicy},
		{"policy", "check", refPolicy, "--zones-from", refConflist},
		{"policy", "check", "--zones-from", refConflist, refPolicy},
	} {
		code, out, errOut := runCLI(args...)
		if code != exitOK || errOut != "" {
			t.Fatalf("%v: code %d, stderr %q", args, code, errOut)
		}
		for _, s := range []string{
			"valid: 3 zones, 5 rules, 0 warnings",
			"FROM \\ TO  frontend    backend                  mgmt   external    host",
			"mgmt       deny        tcp 3306 from 10.0.3.10  allow  deny        udp 53; tcp 53",
			"external   tcp 80,443  deny                     deny   -           -",
			"frontend  10.0.1.0/24",
			"1000, then drop for 10m0s",
			"100Mbit",
		} {
			if !strings.Contains(out, s) {
				t.Errorf("%v: output lacks %q:\n%s", args, s, out)
			}
		}
	}
}

func TestPolicyCheckBroken(t *testing.T) {
	code, out, errOut := runCLI("policy", "check", brokenPol)
	if code != exitFailed || out != "" {
		t.Fatalf("code %d, stdout %q; want %d and nothing on stdout", code, out, exitFailed)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if len(lines) != 9 || !strings.HasSuffix(lines[8], "invalid: 8 errors") {
		t.Errorf("want 8 errors and a summary, got:\n%s", errOut)
	}
	for _, s := range []string{
		`error: rules[0] (api).source "frontnd": is not a zone`,
		`error: rules[1] (db-from-mgmt).destination.ports[0] "70000"`,
		`error: rules[4] (ping).destination.ports: are set but protocol icmp has no ports`,
	} {
		if !strings.Contains(errOut, s) {
			t.Errorf("stderr lacks %q:\n%s", s, errOut)
		}
	}
}

func TestPolicyCheckWarningsAndZones(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.json")
	// Valid with a warning: the rule adds nothing to the intra-zone default.
	doc := `{"rules":[{"name":"self","source":"backend","destination":"backend","protocol":"all"}]}`
	if err := os.WriteFile(pol, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("policy", "check", pol, "--zones-from", refConflist)
	if code != exitOK || !strings.Contains(errOut, "warning: rules[0] (self): is redundant") || !strings.Contains(out, "1 warnings") {
		t.Errorf("code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	// Standalone, the same policy has no zones to name.
	code, _, errOut = runCLI("policy", "check", pol)
	if code != exitFailed || !strings.Contains(errOut, `rules[0] (self).source "backend": is not a zone (zones: none)`) {
		t.Errorf("standalone: code %d, stderr %s", code, errOut)
	}
	// Against a conflist with different zones.
	cl := filepath.Join(dir, "net.conflist")
	os.WriteFile(cl, []byte(`{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"zonenet","zones":[{"name":"frontend","subnet":"10.9.1.0/24"}]}]}`), 0o644)
	code, _, errOut = runCLI("policy", "check", refPolicy, "--zones-from", cl)
	if code != exitFailed || !strings.Contains(errOut, `zones[0] (frontend).subnet "10.0.1.0/24": does not match the network's zone frontend (10.9.1.0/24)`) {
		t.Errorf("other zones: code %d, stderr %s", code, errOut)
	}
}

func TestPolicyCheckUsage(t *testing.T) {
	for _, args := range [][]string{
		{"policy"},
		{"policy", "lint", refPolicy},
		{"policy", "check"},
		{"policy", "check", refPolicy, refPolicy},
		{"policy", "check", "--bogus", refPolicy},
		{"policy", "check", refPolicy, "--zones-from"},
	} {
		code, out, errOut := runCLI(args...)
		if code != exitUsage || out != "" || errOut == "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want %d with a message on stderr", args, code, out, errOut, exitUsage)
		}
	}
	for _, args := range [][]string{{"policy", "--help"}, {"policy", "check", "--help"}, {"policy", "check", "-h", refPolicy}} {
		code, out, errOut := runCLI(args...)
		if code != exitOK || !strings.Contains(out, "policy check FILE") || errOut != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	// Unreadable files are failures, not usage errors.
	code, _, errOut := runCLI("policy", "check", "/nonexistent/policy.yaml")
	if code != exitFailed || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: %d %q", code, errOut)
	}
	code, _, errOut = runCLI("policy", "check", refPolicy, "--zones-from", refPolicy)
	if code != exitFailed || !strings.Contains(errOut, "--zones-from") {
		t.Errorf("zones from a non-conflist: %d %q", code, errOut)
	}
}

// Apply is exercised against the kernel by the integration tests; here only
// what fails before any iptables work.
func TestPolicyApplyFailsEarly(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"policy", "apply"}, exitUsage, "--conflist is required"},
		{[]string{"policy", "apply", "--conflist", refConflist, "extra"}, exitUsage, "unexpected argument"},
		{[]string{"policy", "apply", "--conflist", "/nonexistent.conflist"}, exitFailed, "no such file"},
		{[]string{"policy", "apply", "--conflist", refConflist, "--policy", brokenPol}, exitFailed, brokenPol},
	} {
		code, _, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
}
