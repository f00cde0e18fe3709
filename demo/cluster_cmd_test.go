package demo

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/netns"
)

// builtBins is the directory clusterBinaries built into, removed when the
// tests end.
var builtBins string

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBins != "" {
		_ = os.RemoveAll(builtBins)
	}
	os.Exit(code)
}

// clusterBinaries are zonenet, zonenetd and zonenetctl: from ZONENET_BIN
// when it holds all three (make test-root builds them), else built once.
var clusterBinaries = sync.OnceValues(func() (string, error) {
	if d := os.Getenv("ZONENET_BIN"); d != "" {
		all := true
		for _, b := range []string{"zonenet", "zonenetd", "zonenetctl"} {
			all = all && isExecutable(filepath.Join(d, b)) == nil
		}
		if all {
			return filepath.Abs(d)
		}
	}
	dir, err := os.MkdirTemp("", "zonenet-bins-")
	if err != nil {
		return "", err
	}
	builtBins = dir
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-o", dir+"/", "github.com/zonenet/zonenet/cmd/zonenet",
		"github.com/zonenet/zonenet/cmd/zonenetd", "github.com/zonenet/zonenet/cmd/zonenetctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the binaries: %v\n%s", err, b)
	}
	return dir, nil
})

// clusterRun is one `zonenetctl demo --nodes 3` run.
type clusterRun struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// runClusterDemo runs the command as an operator would; interruptOn, when
// set, sends it SIGINT once its progress log shows that line.
func runClusterDemo(t *testing.T, interruptOn string, args ...string) clusterRun {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("needs etcd (make setup installs it)")
	}
	dir, err := clusterBinaries()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "zonenetctl"), append([]string{"demo", "--nodes", "3",
		"--zonenet", filepath.Join(dir, "zonenet"), "--zonenetd", filepath.Join(dir, "zonenetd")}, args...)...)
	// Past the deadline it gets the Ctrl-C, so it still tears down.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	var stdout strings.Builder
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	sc := bufio.NewScanner(errPipe)
	for sc.Scan() {
		line := sc.Text()
		stderr.WriteString(line + "\n")
		if interruptOn != "" && strings.Contains(line, interruptOn) {
			_ = cmd.Process.Signal(os.Interrupt)
			interruptOn = ""
		}
	}
	err = cmd.Wait()
	r := clusterRun{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	t.Logf("zonenetctl demo %v: exit %d after %s (%v)\nstdout:\n%s\nstderr:\n%s", args, r.code, r.took.Round(time.Millisecond), err, r.stdout, r.stderr)
	assertClusterGone(t, r.stderr)
	return r
}

// assertClusterGone checks that every process the run logged has ended,
// that none of its namespaces is left, and that the machine's own
// namespace holds none of its links or delay rules.
func assertClusterGone(t *testing.T, stderr string) {
	t.Helper()
	for _, m := range regexp.MustCompile(`(?m)(zonenetd|etcd) pid (\d+)`).FindAllStringSubmatch(stderr, -1) {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(b), m[1]) {
				t.Errorf("%s pid %d still runs", m[1], pid)
			}
		}
	}
	m := regexp.MustCompile(`in (zncl-underlay-(\d+))`).FindStringSubmatch(stderr)
	if m == nil {
		t.Errorf("the progress log names no underlay namespace")
		return
	}
	entries, err := os.ReadDir(netns.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "zncl-") && strings.HasSuffix(e.Name(), "-"+m[2]) {
			t.Errorf("namespace %s survived the run", e.Name())
		}
	}
	for _, name := range []string{underlayBridge, nodeUplink, "ul-eu", "ul-us", "ul-ap"} {
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("link %s exists in the machine's own namespace", name)
		}
	}
	if out, err := exec.Command("iptables-save", "-t", "mangle").Output(); err == nil && strings.Contains(string(out), "zonenet demo") {
		t.Errorf("a delay rule of the demo is in the machine's own mangle table")
	}
}

// TestClusterDemo runs `zonenetctl demo --nodes 3` with the reference
// policy and the delays: it must exit 0, show three nodes, round trips of
// at least twice each configured delay, and a matrix without a difference
// from the policy; and leave nothing behind.
func TestClusterDemo(t *testing.T) {
	r := runClusterDemo(t, "")
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0", r.code)
	}
	m := regexp.MustCompile(`(?m)^(\d+) of (\d+) cells differ from the expected policy`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no matrix line in the output")
	}
	if m[1] != "0" || m[2] != "200" {
		t.Errorf("matrix line %q: want 0 of 200 cells (10 containers x 10 targets x 2 ports)", m[0])
	}
	for _, s := range []string{"NODES: 3 up, 0 down", "eu-admin   mgmt      10.0.3.10/24", "detached every container"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	for _, d := range ContinentDelays {
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+%s\s+%s\s+\S+ ms\s+(\S+) ms`, d.A, d.B, d.OneWay))
		mm := re.FindStringSubmatch(r.stdout)
		if mm == nil {
			t.Errorf("no round trip line for %s-%s", d.A, d.B)
			continue
		}
		if lo, _ := strconv.ParseFloat(mm[1], 64); lo < 2*float64(d.OneWay)/float64(time.Millisecond) {
			t.Errorf("%s-%s: minimum round trip %s ms, below twice %s", d.A, d.B, mm[1], d.OneWay)
		}
	}
	if r.took > 60*time.Second {
		t.Errorf("the demo took %s, want under a minute", r.took.Round(time.Second))
	}
}

// TestClusterDemoInterrupted sends Ctrl-C once containers are being
// attached, with every daemon and delay running: the demo must tear
// everything down and exit 130.
func TestClusterDemoInterrupted(t *testing.T) {
	r := runClusterDemo(t, "attached eu-web")
	if r.code != 130 {
		t.Errorf("exit status %d, want 130 (interrupted)", r.code)
	}
	if !strings.Contains(r.stdout, "detached every container") {
		t.Errorf("no teardown summary after the interrupt")
	}
}
