package main

import (
	"strings"
	"testing"
)

func TestClusterDemoFlags(t *testing.T) {
	code, out, _ := runCLI("demo", "--help")
	for _, want := range []string{"-nodes", "-zonenetd", "-delay"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("demo --help: code %d, no %q in:\n%s", code, want, out)
		}
	}
	for _, n := range []string{"0", "2", "4"} {
		code, out, errOut := runCLI("demo", "--nodes", n)
		if code != exitUsage || out != "" || !strings.Contains(errOut, "--nodes "+n) {
			t.Errorf("demo --nodes %s: code %d, stdout %q, stderr %q; want a usage error", n, code, out, errOut)
		}
	}
}
