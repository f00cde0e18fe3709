// Command zonenet is the zonenet CNI plugin: one exec per CNI verb.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/plugin"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func init() {
	// Namespace switches happen on locked threads; keep main's thread
	// out of them entirely.
	runtime.LockOSThread()
}

func main() {
	p := plugin.New()
	p.Fault = os.Getenv("ZONENET_TEST_FAULT")
	if err := prepareStdin(); err != nil {
		_ = plugin.ToCNI(err).(*types.Error).Print()
		os.Exit(1)
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"),
		fmt.Sprintf("zonenet %s: bridge, host and none attachment with zone IPAM", Version))
}

// prepareStdin reads the configuration once to learn the mode. The CNI
// library refuses a CNI_NETNS equal to the plugin's own namespace; host
// mode needs exactly that, so the override is lifted for host mode only.
// Stdin is then handed back to the library unchanged.
func prepareStdin() error {
	cmd := os.Getenv("CNI_COMMAND")
	if cmd != "ADD" && cmd != "DEL" && cmd != "CHECK" {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(os.Stdin, conf.MaxConfigSize+1))
	if err != nil {
		return &types.Error{Code: types.ErrIOFailure, Msg: "read config from stdin: " + err.Error()}
	}
	if len(data) > conf.MaxConfigSize {
		return &conf.Error{Code: types.ErrInvalidNetworkConfig, Key: "config",
			Msg: fmt.Sprintf("is larger than the %d byte limit", conf.MaxConfigSize)}
	}
	var peek struct {
		Mode string `json:"mode"`
	}
	os.Unsetenv("CNI_NETNS_OVERRIDE")
	if json.Unmarshal(data, &peek) == nil && peek.Mode == string(conf.ModeHost) {
		os.Setenv("CNI_NETNS_OVERRIDE", "1")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(w, bytes.NewReader(data))
		w.Close()
	}()
	os.Stdin = r
	return nil
}
