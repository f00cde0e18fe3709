//go:build linux

package cnitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// Call is one plugin invocation, as a runtime makes it.
type Call struct {
	Bin         string // plugin binary
	Command     string // ADD, DEL, CHECK, GC, STATUS, VERSION
	ContainerID string
	Netns       string // CNI_NETNS
	IfName      string // CNI_IFNAME
	Args        string // CNI_ARGS
	Path        string // CNI_PATH; defaults to the plugin's directory and /usr/lib/cni
	Config      []byte // stdin
	// InNetns is the namespace (path) the plugin process runs in: the
	// test's host. Empty runs it in the test's own namespace, which tests
	// must not do for verbs that change anything.
	InNetns string
	// Env adds or overrides environment variables.
	Env []string
	// Timeout bounds the run; zero means one minute.
	Timeout time.Duration
}

// Outcome is what a plugin run produced.
type Outcome struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
	Err      *types.Error // nil on success
	Elapsed  time.Duration
}

// DefaultCNIPath is where Debian installs the reference plugins.
const DefaultCNIPath = "/usr/lib/cni"

// Cmd builds the command for c without starting it: inside the namespace
// InNetns (via `ip netns exec` for named namespaces, which also gives the
// plugin a /sys of that namespace, or nsenter for other paths), with the
// CNI variables added to this process's environment as libcni does. The
// plugin is the process's own image (neither helper forks), so signalling
// the command signals the plugin. The process gets its own process group.
func (c Call) Cmd(ctx context.Context) *exec.Cmd {
	var argv []string
	switch dir, name := filepath.Dir(c.InNetns), filepath.Base(c.InNetns); {
	case c.InNetns == "":
		argv = []string{c.Bin}
	case dir == "/run/netns" || dir == "/var/run/netns":
		argv = []string{"ip", "netns", "exec", name, c.Bin}
	default:
		argv = []string{"nsenter", "--net=" + c.InNetns, "--", c.Bin}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	path := c.Path
	if path == "" {
		path = filepath.Dir(c.Bin) + string(os.PathListSeparator) + DefaultCNIPath
	}
	env := make([]string, 0, len(os.Environ())+8)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CNI_") {
			env = append(env, e)
		}
	}
	env = append(env,
		"CNI_COMMAND="+c.Command,
		"CNI_CONTAINERID="+c.ContainerID,
		"CNI_NETNS="+c.Netns,
		"CNI_IFNAME="+c.IfName,
		"CNI_ARGS="+c.Args,
		"CNI_PATH="+path,
	)
	cmd.Env = append(env, c.Env...)
	cmd.Stdin = bytes.NewReader(c.Config)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Generous: on a loaded machine the last output can trail the exit.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// Run executes the call and reports the outcome. It never fails the test,
// so it can be used from any goroutine. A run that exits non-zero yields an
// Err: the CNI error the plugin printed, or a synthetic one with code 999
// when stdout is not a CNI error.
func Run(c Call) Outcome {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := c.Cmd(ctx)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	o := Outcome{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Elapsed: time.Since(start)}
	if cmd.ProcessState != nil {
		o.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		o.Err = AsCNIError(o.Stdout, fmt.Sprintf("%v (stderr: %s)", err, strings.TrimSpace(stderr.String())))
	}
	return o
}

// AsCNIError decodes a CNI error printed by a failed plugin. When stdout is
// not one it returns code 999 with fallback as the message.
func AsCNIError(stdout []byte, fallback string) *types.Error {
	var e types.Error
	if err := json.Unmarshal(stdout, &e); err != nil || (e.Code == 0 && e.Msg == "") {
		return &types.Error{Code: types.ErrInternal, Msg: "plugin printed no CNI error: " + fallback, Details: string(stdout)}
	}
	return &e
}

// Exec runs the call and returns stdout and, when the plugin failed, its
// CNI error. The plugin's stderr is logged when it failed. Exec only calls
// t.Logf, so it is safe from other goroutines while the test runs.
func Exec(t testing.TB, c Call) ([]byte, *types.Error) {
	t.Helper()
	o := Run(c)
	if o.Err != nil && len(o.Stderr) > 0 {
		t.Logf("%s %s %s: stderr: %s", c.Command, c.ContainerID, c.IfName, strings.TrimSpace(string(o.Stderr)))
	}
	return o.Stdout, o.Err
}

// MustExec runs the call and fails the test unless it succeeds.
func MustExec(t testing.TB, c Call) []byte {
	t.Helper()
	out, e := Exec(t, c)
	if e != nil {
		t.Fatalf("%s %s (ifname %s, netns %s): code %d: %s (%s)", c.Command, c.ContainerID, c.IfName, c.Netns, e.Code, e.Msg, e.Details)
	}
	return out
}
