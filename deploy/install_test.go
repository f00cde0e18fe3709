// Package deploy holds the deployment files; these tests run the installer
// script against temporary directories standing in for the node's
// /opt/cni/bin and /etc/cni/net.d, and check the shipped configs.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zonenet/zonenet/conf"
)

const fakePluginScript = `#!/bin/sh
if [ "$CNI_COMMAND" = VERSION ]; then
	echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}'
	exit 0
fi
exit 1
`

type node struct {
	src, bin, net string
}

func newNode(t *testing.T, plugin string) node {
	t.Helper()
	root := t.TempDir()
	n := node{
		src: filepath.Join(root, "image", "opt", "zonenet", "bin"),
		bin: filepath.Join(root, "host", "opt", "cni", "bin"),
		net: filepath.Join(root, "host", "etc", "cni", "net.d"),
	}
	if err := os.MkdirAll(n.src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.src, "zonenet"), []byte(plugin), 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

// installer prepares a run of install-cni.sh for n with extra env.
func (n node) installer(t *testing.T, args []string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"install-cni.sh"}, args...)...)
	cmd.Env = append(os.Environ(),
		"CNI_BIN_DIR="+n.bin,
		"CNI_NET_DIR="+n.net,
		"ZONENET_SRC_DIR="+n.src,
		"CNI_CONF_TEMPLATE="+mustAbs(t, "10-zonenet.conflist"),
		"CNI_NETWORK_CONFIG=",
		"CNI_CONF_NAME=",
	)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func (n node) install(t *testing.T, env ...string) (string, error) {
	t.Helper()
	out, err := n.installer(t, []string{"--once"}, env...).CombinedOutput()
	return string(out), err
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// assertNoTemp fails if a staged file was left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

func TestInstallDefault(t *testing.T) {
	n := newNode(t, fakePluginScript)
	if out, err := n.install(t); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	bin := filepath.Join(n.bin, "zonenet")
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("plugin mode %v, want 0755", st.Mode().Perm())
	}
	if b, _ := os.ReadFile(bin); string(b) != fakePluginScript {
		t.Error("installed plugin differs from the image's")
	}
	if out, err := exec.Command(bin).CombinedOutput(); err == nil {
		t.Errorf("installed plugin ran without CNI_COMMAND: %s", out)
	}
	checkConflist(t, filepath.Join(n.net, "10-zonenet.conflist"))
	assertNoTemp(t, n.bin)
	assertNoTemp(t, n.net)
}

// checkConflist asserts path is a conflist whose zonenet entry the plugin's
// own config parser accepts, given the name and version a runtime injects.
func checkConflist(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("%s is not valid JSON: %v", path, err)
	}
	if list.Name == "" || len(list.Plugins) == 0 {
		t.Fatalf("%s: no name or no plugins", path)
	}
	var plugin map[string]any
	if err := json.Unmarshal(list.Plugins[0], &plugin); err != nil {
		t.Fatal(err)
	}
	if plugin["type"] != "zonenet" {
		t.Fatalf("first plugin has type %v, want zonenet", plugin["type"])
	}
	plugin["name"], plugin["cniVersion"] = list.Name, list.CNIVersion
	one, _ := json.Marshal(plugin)
	if _, err := conf.Parse(one); err != nil {
		t.Errorf("the plugin rejects %s: %v", path, err)
	}
}

func TestInstallFromEnvironment(t *testing.T) {
	n := newNode(t, fakePluginScript)
	custom := `{"cniVersion":"1.1.0","name":"edge","plugins":[{"type":"zonenet","zones":[{"name":"web","subnet":"10.9.1.0/24"}]}]}`
	out, err := n.install(t, "CNI_NETWORK_CONFIG="+custom, "CNI_CONF_NAME=05-edge.conflist")
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(n.net, "05-edge.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != custom {
		t.Errorf("conflist = %s, want %s", got, custom)
	}
	checkConflist(t, filepath.Join(n.net, "05-edge.conflist"))
	if _, err := os.Stat(filepath.Join(n.net, "10-zonenet.conflist")); err == nil {
		t.Error("the default conflist was written too")
	}
}

func TestInstallReplacesByRename(t *testing.T) {
	n := newNode(t, fakePluginScript)
	if out, err := n.install(t); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	ino := func(p string) uint64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	bin, cfg := filepath.Join(n.bin, "zonenet"), filepath.Join(n.net, "10-zonenet.conflist")
	binIno, cfgIno := ino(bin), ino(cfg)

	// Same config again: left alone, so runtimes see no change.
	out, err := n.install(t)
	if err != nil {
		t.Fatalf("second install: %v\n%s", err, out)
	}
	if ino(cfg) != cfgIno || !strings.Contains(out, "up to date") {
		t.Errorf("an unchanged conflist was rewritten:\n%s", out)
	}
	// A writer in place would keep the inode; a rename gives a new one.
	if ino(bin) == binIno {
		t.Error("plugin was overwritten in place, not renamed over")
	}
	if _, err := n.install(t, `CNI_NETWORK_CONFIG={"name":"x","plugins":[{"type":"zonenet"}]}`); err != nil {
		t.Fatal(err)
	}
	if ino(cfg) == cfgIno {
		t.Error("conflist was overwritten in place, not renamed over")
	}
}

func TestInstallRefusesBadConfig(t *testing.T) {
	n := newNode(t, fakePluginScript)
	if out, err := n.install(t); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	cfg := filepath.Join(n.net, "10-zonenet.conflist")
	before, _ := os.ReadFile(cfg)
	for _, bad := range []string{`{"cniVersion": `, `{"name":"x","plugins":[{"type":"bridge"}]}`} {
		out, err := n.install(t, "CNI_NETWORK_CONFIG="+bad)
		if err == nil {
			t.Errorf("installer accepted %s:\n%s", bad, out)
		}
		if after, _ := os.ReadFile(cfg); !bytes.Equal(before, after) {
			t.Errorf("a rejected config replaced the installed one")
		}
		assertNoTemp(t, n.net)
	}
}

func TestInstallRefusesBrokenPlugin(t *testing.T) {
	n := newNode(t, fakePluginScript)
	if out, err := n.install(t); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(n.src, "zonenet"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := n.install(t)
	if err == nil {
		t.Fatalf("installer accepted a plugin that does not answer VERSION:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(n.bin, "zonenet")); string(b) != fakePluginScript {
		t.Error("the working plugin was replaced by the broken one")
	}
	assertNoTemp(t, n.bin)
}

func TestInstallerStaysUpUntilTERM(t *testing.T) {
	n := newNode(t, fakePluginScript)
	cmd := n.installer(t, nil)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "sleeping") {
			break
		}
	}
	if _, err := os.Stat(filepath.Join(n.net, "10-zonenet.conflist")); err != nil {
		t.Fatalf("conflist not written before sleeping: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("installer exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("installer ignored SIGTERM")
	}
}

func TestUsage(t *testing.T) {
	n := newNode(t, fakePluginScript)
	out, err := n.installer(t, []string{"--help"}).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "CNI_NETWORK_CONFIG") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	if err := n.installer(t, []string{"--bogus"}).Run(); err == nil {
		t.Error("unknown flag accepted")
	}
}

func TestShippedConflist(t *testing.T) {
	checkConflist(t, "10-zonenet.conflist")
	b, _ := os.ReadFile("10-zonenet.conflist")
	var list struct {
		Plugins []struct {
			IPMasq       bool            `json:"ipMasq"`
			Capabilities map[string]bool `json:"capabilities"`
			Zones        []struct{ Name, Subnet string }
		}
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	p := list.Plugins[0]
	want := map[string]string{"frontend": "10.0.1.0/24", "backend": "10.0.2.0/24", "mgmt": "10.0.3.0/24"}
	got := map[string]string{}
	for _, z := range p.Zones {
		got[z.Name] = z.Subnet
	}
	if !reflect.DeepEqual(got, want) || !p.IPMasq {
		t.Errorf("zones %v ipMasq %v; want %v and ipMasq", got, p.IPMasq, want)
	}
	for _, c := range []string{"portMappings", "ips", "mac"} {
		if !p.Capabilities[c] {
			t.Errorf("capability %s not enabled", c)
		}
	}
}

// TestDaemonSetMatches checks that the manifest's ConfigMap carries the same
// conflist as the file, and that it mounts the node's CNI directories.
func TestDaemonSetMatches(t *testing.T) {
	b, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	const key = "  10-zonenet.conflist: |\n"
	i := strings.Index(y, key)
	if i < 0 {
		t.Fatal("no 10-zonenet.conflist in the ConfigMap")
	}
	var block strings.Builder
	for _, line := range strings.SplitAfter(y[i+len(key):], "\n") {
		if !strings.HasPrefix(line, "    ") && strings.TrimSpace(line) != "" {
			break
		}
		block.WriteString(strings.TrimPrefix(line, "    "))
	}
	var inYAML, inFile any
	if err := json.Unmarshal([]byte(block.String()), &inYAML); err != nil {
		t.Fatalf("ConfigMap conflist is not JSON: %v\n%s", err, block.String())
	}
	f, _ := os.ReadFile("10-zonenet.conflist")
	if err := json.Unmarshal(f, &inFile); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inYAML, inFile) {
		t.Error("daemonset.yaml's ConfigMap differs from 10-zonenet.conflist")
	}
	for _, s := range []string{"hostNetwork: true", "path: /opt/cni/bin", "path: /etc/cni/net.d",
		"mountPath: /host/opt/cni/bin", "mountPath: /host/etc/cni/net.d", "kind: DaemonSet"} {
		if !strings.Contains(y, s) {
			t.Errorf("daemonset.yaml lacks %q", s)
		}
	}
	if strings.Contains(y, "\t") {
		t.Error("daemonset.yaml contains a tab")
	}
}
