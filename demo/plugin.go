package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/netns"
)

// Plugin runs a CNI plugin binary the way a container runtime does: CNI_*
// variables in the environment, the network config on stdin, the result or
// a CNI error on stdout.
type Plugin struct {
	// Path is the plugin binary.
	Path string
	// HostNetns is the namespace the plugin runs in (the "host" it
	// configures). Empty runs it in the caller's namespace.
	HostNetns string
	// Timeout bounds one exec; zero means 30 s.
	Timeout time.Duration
}

// Invocation is one call of the plugin.
type Invocation struct {
	Command     string // ADD, DEL, CHECK, GC, STATUS, VERSION
	ContainerID string
	Netns       string // path of the container's namespace
	IfName      string
	Args        string // CNI_ARGS, e.g. "ZONE=backend"
	Config      []byte
}

// PluginError is a failed plugin exec. Code, Msg and Details come from the
// CNI error object the plugin printed, when it printed one.
type PluginError struct {
	Command string
	Code    int
	Msg     string
	Details string
	Stderr  string
	Err     error // the exec or exit error
}

func (e *PluginError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "zonenet %s", e.Command)
	if e.Msg != "" {
		fmt.Fprintf(&b, ": CNI error %d: %s", e.Code, e.Msg)
		if e.Details != "" {
			fmt.Fprintf(&b, " (%s)", e.Details)
		}
	} else if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, "; stderr: %s", lastLines(s, 5))
	}
	return b.String()
}

func (e *PluginError) Unwrap() error { return e.Err }

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Exec runs the plugin once and returns its stdout. A context cancelled
// while the plugin runs does not kill it: a runtime must not leave a
// half-done ADD behind, and DEL comes next anyway. Only Timeout kills it.
func (p Plugin) Exec(ctx context.Context, inv Invocation) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd := exec.Command(p.Path)
	cmd.Env = pluginEnv(os.Environ(), inv, filepath.Dir(p.Path))
	cmd.Stdin = bytes.NewReader(inv.Config)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group: a Ctrl-C at the terminal goes to the demo,
	// which finishes the plugin call in flight and then cleans up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	start := cmd.Start
	var err error
	if p.HostNetns != "" {
		// The child inherits the namespace of the thread that forks it.
		// Start's pipe-copying goroutines only move bytes, so they may run
		// on any thread.
		err = netns.Do(p.HostNetns, start)
	} else {
		err = start()
	}
	if err != nil {
		return nil, &PluginError{Command: inv.Command, Err: err}
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("killed after %s", timeout)
	}
	if err != nil {
		pe := &PluginError{Command: inv.Command, Stderr: stderr.String(), Err: err}
		var ce struct {
			Code    int    `json:"code"`
			Msg     string `json:"msg"`
			Details string `json:"details"`
		}
		if json.Unmarshal(stdout.Bytes(), &ce) == nil {
			pe.Code, pe.Msg, pe.Details = ce.Code, ce.Msg, ce.Details
		}
		return stdout.Bytes(), pe
	}
	return stdout.Bytes(), nil
}

// pluginEnv is the caller's environment without any CNI_ variable, plus the
// ones of this invocation.
func pluginEnv(base []string, inv Invocation, cniPath string) []string {
	env := make([]string, 0, len(base)+6)
	for _, kv := range base {
		if !strings.HasPrefix(kv, "CNI_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"CNI_COMMAND="+inv.Command,
		"CNI_CONTAINERID="+inv.ContainerID,
		"CNI_NETNS="+inv.Netns,
		"CNI_IFNAME="+inv.IfName,
		"CNI_ARGS="+inv.Args,
		"CNI_PATH="+cniPath,
	)
	return env
}

// Result is the part of a CNI 1.x result the demo reads.
type Result struct {
	CNIVersion string      `json:"cniVersion"`
	Interfaces []Interface `json:"interfaces"`
	IPs        []IPConfig  `json:"ips"`
}

// Interface is one interface of a CNI result.
type Interface struct {
	Name    string `json:"name"`
	Mac     string `json:"mac"`
	Sandbox string `json:"sandbox"`
}

// IPConfig is one address of a CNI result.
type IPConfig struct {
	Address   netip.Prefix `json:"address"`
	Gateway   netip.Addr   `json:"gateway"`
	Interface *int         `json:"interface"`
}

// ParseResult decodes a plugin's ADD output.
func ParseResult(b []byte) (*Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode ADD result: %w (output %q)", err, truncate(string(b), 200))
	}
	return &r, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ContainerIface returns the index of the interface inside the container
// sandbox named ifname, or -1.
func (r *Result) ContainerIface(ifname string) int {
	for i, it := range r.Interfaces {
		if it.Sandbox != "" && it.Name == ifname {
			return i
		}
	}
	return -1
}

// IPv4 returns the first IPv4 address assigned to interface idx (any
// interface when idx < 0) and its gateway.
func (r *Result) IPv4(idx int) (netip.Prefix, netip.Addr, bool) {
	for _, ip := range r.IPs {
		if !ip.Address.Addr().Is4() {
			continue
		}
		if idx >= 0 && ip.Interface != nil && *ip.Interface != idx {
			continue
		}
		return ip.Address, ip.Gateway, true
	}
	return netip.Prefix{}, netip.Addr{}, false
}

// HostSide lists the interfaces of the result that live outside any
// sandbox, in the order the plugin reported them (bridge and host veth).
func (r *Result) HostSide() []string {
	var out []string
	for _, it := range r.Interfaces {
		if it.Sandbox == "" && it.Name != "" {
			out = append(out, it.Name)
		}
	}
	return out
}

// Add attaches a container and returns the plugin's result.
func (p Plugin) Add(ctx context.Context, inv Invocation) (*Result, error) {
	inv.Command = "ADD"
	out, err := p.Exec(ctx, inv)
	if err != nil {
		return nil, err
	}
	return ParseResult(out)
}

// Del detaches a container.
func (p Plugin) Del(ctx context.Context, inv Invocation) error {
	inv.Command = "DEL"
	_, err := p.Exec(ctx, inv)
	return err
}

// Attachment names one attachment a runtime still considers valid, in the
// form GC's cni.dev/valid-attachments takes.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// GC asks the plugin to drop every attachment of the network not in valid.
func (p Plugin) GC(ctx context.Context, conf []byte, valid []Attachment) error {
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		return fmt.Errorf("GC: network config: %w", err)
	}
	if valid == nil {
		valid = []Attachment{}
	}
	m["cni.dev/valid-attachments"] = valid
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = p.Exec(ctx, Invocation{Command: "GC", Config: b})
	return err
}

// FindPlugin locates the zonenet binary: explicit if set, else next to the
// running executable, else in PATH.
func FindPlugin(explicit string) (string, error) {
	if explicit != "" {
		if err := isExecutable(explicit); err != nil {
			return "", fmt.Errorf("--zonenet %s: %w", explicit, err)
		}
		return filepath.Abs(explicit)
	}
	if self, err := os.Executable(); err == nil {
		cand := filepath.Join(filepath.Dir(self), "zonenet")
		if isExecutable(cand) == nil {
			return cand, nil
		}
	}
	if p, err := exec.LookPath("zonenet"); err == nil {
		return filepath.Abs(p)
	}
	return "", errors.New("zonenet plugin binary not found next to this program or in PATH; pass --zonenet PATH")
}

func isExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
