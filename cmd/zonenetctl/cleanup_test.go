package main

import (
	"strings"
	"testing"
)

func TestCleanupUsage(t *testing.T) {
	code, out, errOut := runCLI("cleanup", "--help")
	if code != exitOK || !strings.Contains(out, "-dry-run") || !strings.Contains(out, "-force") || errOut != "" {
		t.Errorf("cleanup --help: %d %q %q", code, out, errOut)
	}
	for _, args := range [][]string{{"cleanup", "now"}, {"cleanup", "--bogus"}} {
		if code, out, errOut := runCLI(args...); code != exitUsage || out != "" || errOut == "" {
			t.Errorf("%v: %d %q %q, want a usage error", args, code, out, errOut)
		}
	}
	if _, out, _ := runCLI("--help"); !strings.Contains(out, "cleanup") {
		t.Errorf("usage does not list cleanup:\n%s", out)
	}
}
