//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// plugin execs one CNI plugin binary the way libcni does: the CNI_*
// variables appended to the caller's environment, and the single plugin
// object of the conflist on stdin with "name" and "cniVersion" injected
// (plus "prevResult" on DEL).
type plugin struct {
	binDir  string
	typ     string
	name    string
	version string
	conf    map[string]any
}

// loadPlugin reads a conflist with exactly one plugin; chains are not
// benchmarked.
func loadPlugin(conflistPath, binDir string) (*plugin, error) {
	raw, err := os.ReadFile(conflistPath)
	if err != nil {
		return nil, fmt.Errorf("read conflist: %w", err)
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("parse conflist %s: %w", conflistPath, err)
	}
	if len(list.Plugins) != 1 {
		return nil, fmt.Errorf("conflist %s: want exactly one plugin, got %d", conflistPath, len(list.Plugins))
	}
	typ, _ := list.Plugins[0]["type"].(string)
	if typ == "" || list.Name == "" || list.CNIVersion == "" {
		return nil, fmt.Errorf("conflist %s: name, cniVersion and plugins[0].type are required", conflistPath)
	}
	return &plugin{binDir: binDir, typ: typ, name: list.Name, version: list.CNIVersion, conf: list.Plugins[0]}, nil
}

// call is one plugin invocation.
type call struct {
	command     string
	containerID string
	netns       string
	prevResult  json.RawMessage
}

// outcome of one invocation; elapsed covers fork, exec and wait, as a
// runtime sees it.
type outcome struct {
	elapsed time.Duration
	stdout  []byte
	err     error
}

func (p *plugin) stdin(prev json.RawMessage) ([]byte, error) {
	conf := make(map[string]any, len(p.conf)+3)
	for k, v := range p.conf {
		conf[k] = v
	}
	conf["name"] = p.name
	conf["cniVersion"] = p.version
	if len(prev) > 0 {
		conf["prevResult"] = prev
	}
	return json.Marshal(conf)
}

func (p *plugin) run(h *hostNS, c call) outcome {
	in, err := p.stdin(c.prevResult)
	if err != nil {
		return outcome{err: fmt.Errorf("render config: %w", err)}
	}
	bin := filepath.Join(p.binDir, p.typ)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+c.command,
		"CNI_CONTAINERID="+c.containerID,
		"CNI_NETNS="+c.netns,
		"CNI_ARGS=",
		"CNI_IFNAME=eth0",
		"CNI_PATH="+p.binDir,
	)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	var elapsed time.Duration
	if nsErr := h.do(func() {
		start := time.Now()
		err = cmd.Run()
		elapsed = time.Since(start)
	}); nsErr != nil {
		return outcome{err: nsErr}
	}
	if err != nil {
		return outcome{elapsed: elapsed, err: fmt.Errorf("%s: %w\n  reproduce: %s\n  stdout: %s\n  stderr: %s",
			c.command, err, reproduce(h, bin, c, in), trim(stdout.String()), trim(stderr.String()))}
	}
	return outcome{elapsed: elapsed, stdout: stdout.Bytes()}
}

// reproduce renders a shell command that repeats a failed call by hand
// (the netns paths exist only while the driver runs).
func reproduce(h *hostNS, bin string, c call, stdin []byte) string {
	return fmt.Sprintf("echo '%s' | CNI_COMMAND=%s CNI_CONTAINERID=%s CNI_NETNS=%s CNI_IFNAME=eth0 CNI_PATH=%s nsenter --net=%s %s",
		stdin, c.command, c.containerID, c.netns, filepath.Dir(bin), h.path, bin)
}

func trim(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	return s
}

// resultIPs pulls the addresses out of an ADD result so the driver can
// check that no address was handed out twice.
func resultIPs(stdout []byte) ([]string, error) {
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(stdout, &res); err != nil {
		return nil, fmt.Errorf("parse ADD result %q: %w", trim(string(stdout)), err)
	}
	if len(res.IPs) == 0 {
		return nil, errors.New("ADD result has no ips: " + trim(string(stdout)))
	}
	out := make([]string, 0, len(res.IPs))
	for _, ip := range res.IPs {
		out = append(out, ip.Address)
	}
	return out, nil
}
