package demo

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const sampleResult = `{
  "cniVersion": "1.1.0",
  "interfaces": [
    {"name": "zndemo-fe", "mac": "02:00:00:00:00:01"},
    {"name": "zn0123456789ab", "mac": "02:00:00:00:00:02"},
    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}
  ],
  "ips": [
    {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
    {"address": "10.0.1.5/24", "gateway": "10.0.1.1", "interface": 2}
  ]
}`

func TestParseResult(t *testing.T) {
	r, err := ParseResult([]byte(sampleResult))
	if err != nil {
		t.Fatal(err)
	}
	idx := r.ContainerIface("eth0")
	if idx != 2 {
		t.Fatalf("ContainerIface = %d, want 2", idx)
	}
	ip, gw, ok := r.IPv4(idx)
	if !ok || ip != netip.MustParsePrefix("10.0.1.5/24") || gw != netip.MustParseAddr("10.0.1.1") {
		t.Errorf("IPv4 = %v %v %v", ip, gw, ok)
	}
	if _, _, ok := r.IPv4(1); ok {
		t.Error("IPv4 found an address on the host veth")
	}
	if got := r.HostSide(); !slices.Equal(got, []string{"zndemo-fe", "zn0123456789ab"}) {
		t.Errorf("HostSide = %v", got)
	}
	if _, err := ParseResult([]byte("not json")); err == nil {
		t.Error("ParseResult accepted garbage")
	}
}

func TestPluginEnv(t *testing.T) {
	base := []string{"PATH=/bin", "CNI_COMMAND=stale", "CNI_ARGS=stale", "HOME=/root"}
	inv := Invocation{Command: "ADD", ContainerID: "c1", Netns: "/run/netns/c1", IfName: "eth0", Args: "ZONE=backend"}
	env := pluginEnv(base, inv, "/opt/zn")
	want := []string{"PATH=/bin", "HOME=/root", "CNI_COMMAND=ADD", "CNI_CONTAINERID=c1",
		"CNI_NETNS=/run/netns/c1", "CNI_IFNAME=eth0", "CNI_ARGS=ZONE=backend", "CNI_PATH=/opt/zn"}
	if !slices.Equal(env, want) {
		t.Errorf("env = %v\nwant  %v", env, want)
	}
}

// fakePlugin writes a shell script that acts as a plugin.
func fakePlugin(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "zonenet")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecPassesEnvAndStdin(t *testing.T) {
	// Echo the environment and the config back, as a result would come.
	p := Plugin{Path: fakePlugin(t, `printf '{"cmd":"%s","id":"%s","args":"%s","path":"%s","conf":%s}' `+
		`"$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_ARGS" "$CNI_PATH" "$(cat)"`)}
	out, err := p.Exec(context.Background(), Invocation{
		Command: "ADD", ContainerID: "abc", Args: "ZONE=mgmt", Config: []byte(`{"name":"n"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Cmd, ID, Args, Path string
		Conf                map[string]string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Cmd != "ADD" || got.ID != "abc" || got.Args != "ZONE=mgmt" || got.Path != filepath.Dir(p.Path) || got.Conf["name"] != "n" {
		t.Errorf("plugin saw %+v", got)
	}
}

func TestExecCNIError(t *testing.T) {
	p := Plugin{Path: fakePlugin(t, `echo "diagnostic" >&2
echo '{"cniVersion":"1.1.0","code":7,"msg":"invalid network config","details":"zones[0].subnet"}'
exit 1`)}
	err := p.Del(context.Background(), Invocation{ContainerID: "x"})
	var pe *PluginError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *PluginError", err)
	}
	if pe.Command != "DEL" || pe.Code != 7 || pe.Msg != "invalid network config" {
		t.Errorf("PluginError = %+v", pe)
	}
	for _, s := range []string{"zonenet DEL", "CNI error 7", "zones[0].subnet", "diagnostic"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestExecTimeout(t *testing.T) {
	p := Plugin{Path: fakePlugin(t, "exec sleep 10\n"), Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := p.Exec(context.Background(), Invocation{Command: "ADD"})
	if err == nil || !strings.Contains(err.Error(), "killed after") {
		t.Fatalf("err = %v, want a timeout kill", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("timeout took %s", time.Since(start))
	}
}

func TestGCSendsValidAttachments(t *testing.T) {
	dir := t.TempDir()
	p := Plugin{Path: fakePlugin(t, `cat > `+dir+`/conf; echo "$CNI_COMMAND" > `+dir+`/cmd`)}
	if err := p.GC(context.Background(), []byte(`{"name":"n","type":"zonenet"}`), nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "conf"))
	var conf map[string]json.RawMessage
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if v := string(conf["cni.dev/valid-attachments"]); v != "[]" {
		t.Errorf("valid-attachments = %s, want []", v)
	}
	if c, _ := os.ReadFile(filepath.Join(dir, "cmd")); strings.TrimSpace(string(c)) != "GC" {
		t.Errorf("CNI_COMMAND = %q", c)
	}
}

func TestFindPlugin(t *testing.T) {
	p := fakePlugin(t, "exit 0\n")
	if got, err := FindPlugin(p); err != nil || got != p {
		t.Errorf("FindPlugin(%s) = %q, %v", p, got, err)
	}
	if _, err := FindPlugin(filepath.Dir(p)); err == nil {
		t.Error("FindPlugin accepted a directory")
	}
	t.Setenv("PATH", filepath.Dir(p))
	if got, err := FindPlugin(""); err != nil || got != p {
		t.Errorf("FindPlugin from PATH = %q, %v", got, err)
	}
	t.Setenv("PATH", t.TempDir())
	self, _ := os.Executable()
	if _, serr := os.Stat(filepath.Join(filepath.Dir(self), "zonenet")); serr == nil {
		return // a plugin really sits next to the test binary
	}
	if got, err := FindPlugin(""); err == nil {
		t.Errorf("FindPlugin found %q where there is none", got)
	}
}
