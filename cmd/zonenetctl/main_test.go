package main

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/ipam"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb strings.Builder
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"--help"}, "Commands:"},
		{[]string{"help"}, "Commands:"},
		{[]string{"demo", "--help"}, "--zonenet PATH"},
		{[]string{"demo", "-h"}, "-keep"},
		{[]string{"status", "--help"}, "-data-dir"},
		{[]string{"version", "--help"}, "Usage: zonenetctl version"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(tt.args...)
		if code != 0 || !strings.Contains(out, tt.want) || errOut != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want 0 and %q on stdout only", tt.args, code, out, errOut, tt.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"status", "--bogus"},
		{"version", "extra"},
		{"demo", "--ports", "70000"},
		{"demo", "--ports", "8080,x"},
	} {
		code, out, errOut := runCLI(args...)
		if code != exitUsage || errOut == "" || out != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want %d with a message on stderr", args, code, out, errOut, exitUsage)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "zonenetctl "+Version+" ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestStatus(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCLI("status", "--data-dir", dir, "--network", "prod")
	if code != exitFailed || !strings.Contains(errOut, "no zonenet store") {
		t.Errorf("status without a store: %d %q", code, errOut)
	}

	st, err := ipam.Open(filepath.Join(dir, "zonenet.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const id = "4f1c2a9b7e3d5c6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a"
	pools := []ipam.Pool{{
		Subnet:  netip.MustParsePrefix("10.0.2.0/24"),
		Gateway: netip.MustParseAddr("10.0.2.1"),
		Start:   netip.MustParseAddr("10.0.2.10"),
		End:     netip.MustParseAddr("10.0.2.200"),
	}}
	_, err = st.Allocate(ipam.Request{
		Attachment: ipam.Attachment{
			Key:  ipam.Key{Network: "prod", ContainerID: id, IfName: "eth0"},
			Zone: "backend", Mode: "bridge", MAC: "aa:bb:cc:dd:ee:ff", HostVeth: "zn4f1c2a9b7e3d",
		},
		Pools: pools,
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI("status", "--data-dir", dir, "--network", "prod")
	if code != 0 {
		t.Fatalf("status: %d %q", code, errOut)
	}
	for _, s := range []string{"CONTAINER", "prod", id[:12] + " ", "backend", "10.0.2.10/24", "zn4f1c2a9b7e3d", "0s"} {
		if !strings.Contains(out, s) {
			t.Errorf("status output lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, id[:13]) {
		t.Errorf("container ID not shortened to 12 characters:\n%s", out)
	}

	code, out, _ = runCLI("status", "--data-dir", dir, "--network", "staging")
	if code != 0 || out != "no attachments\n" {
		t.Errorf("status of an empty network: %d %q", code, out)
	}
}
