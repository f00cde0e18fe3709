//go:build linux

package cnitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// NSExec is an invoke.Exec for libcni that runs every plugin inside a
// namespace, as a runtime living in that namespace would. Give it to
// libcni.NewCNIConfigWithCacheDir.
type NSExec struct {
	NS *NS
	// Stderr collects the plugins' standard error.
	Stderr bytes.Buffer
}

var _ invoke.Exec = (*NSExec)(nil)

// ExecPlugin runs the plugin and turns a failure into the plugin's CNI
// error, as invoke.RawExec does.
func (e *NSExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.NS.Name, pluginPath)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdinData)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	e.Stderr.Write(stderr.Bytes())
	if err != nil {
		var te types.Error
		if json.Unmarshal(stdout.Bytes(), &te) == nil && (te.Code != 0 || te.Msg != "") {
			return nil, &te
		}
		return nil, fmt.Errorf("plugin %s: %w: %s%s", pluginPath, err, stdout.String(), strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// FindInPath looks the plugin up as libcni normally does.
func (e *NSExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// Decode parses a VERSION answer.
func (e *NSExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(jsonBytes)
}
