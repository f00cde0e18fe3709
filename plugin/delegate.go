package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/zonenet/zonenet/ipam"
)

// Delegated IPAM: when "ipam.type" names another plugin (host-local,
// static, dhcp …), that plugin hands out the addresses; zonenet still
// records the attachment so DEL, CHECK and GC know about it.

// execDelegate runs the delegate IPAM plugin with the container's CNI
// environment and our own config on stdin, the way a runtime would. (The
// CNI library's invoke package would do it too, but it drags a tracing
// stack and net/http into a binary whose exec time is the product.)
func (p *Plugin) execDelegate(r *request, command string) ([]byte, error) {
	var bin string
	for _, dir := range filepath.SplitList(r.cmd.Path) {
		cand := filepath.Join(dir, r.conf.DelegateIPAM)
		if st, err := os.Stat(cand); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			bin = cand
			break
		}
	}
	if bin == "" {
		return nil, &types.Error{Code: types.ErrInvalidNetworkConfig,
			Msg: fmt.Sprintf("ipam.type %q: no such plugin in CNI_PATH %q", r.conf.DelegateIPAM, r.cmd.Path)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+r.cmd.ContainerID, "CNI_NETNS="+r.cmd.Netns,
		"CNI_IFNAME="+r.cmd.IfName, "CNI_ARGS="+r.cmd.Args, "CNI_PATH="+r.cmd.Path)
	cmd.Stdin = bytes.NewReader(r.cmd.StdinData)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var e types.Error
		if json.Unmarshal(stdout.Bytes(), &e) == nil && e.Msg != "" {
			return nil, &e
		}
		return nil, fmt.Errorf("%s %s: %w: %s", bin, command, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

func (p *Plugin) allocateDelegated(r *request, rec *ipam.Attachment) (bool, error) {
	out, err := p.execDelegate(r, "ADD")
	if err != nil {
		return false, fmt.Errorf("delegated IPAM %s: %w", r.conf.DelegateIPAM, err)
	}
	raw, err := version.NewResult(r.conf.CNIVersion, out)
	if err != nil {
		return false, fmt.Errorf("delegated IPAM %s result: %w", r.conf.DelegateIPAM, err)
	}
	res, err := current.NewResultFromResult(raw)
	if err != nil {
		return false, fmt.Errorf("delegated IPAM %s result: %w", r.conf.DelegateIPAM, err)
	}
	rec.Delegated = r.conf.DelegateIPAM
	for _, ipc := range res.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ipc.Address.Mask.Size()
		rec.IPs = append(rec.IPs, netip.PrefixFrom(a.Unmap(), ones))
	}
	if len(rec.IPs) == 0 {
		_ = p.delegateDel(r, rec.Delegated)
		return false, fmt.Errorf("delegated IPAM %s returned no address", r.conf.DelegateIPAM)
	}
	if err := p.withStore(r.storePath(), func(s *ipam.Store) error { return s.Put(*rec) }); err != nil {
		_ = p.delegateDel(r, rec.Delegated)
		return false, err
	}
	return true, nil
}

func (p *Plugin) delegateDel(r *request, plugin string) error {
	if r.conf.DelegateIPAM == "" || r.conf.DelegateIPAM != plugin {
		return nil
	}
	if _, err := p.execDelegate(r, "DEL"); err != nil {
		return fmt.Errorf("delegated IPAM %s DEL: %w", plugin, err)
	}
	return nil
}

// delegateSupports asks the delegate which CNI versions it speaks: GC and
// STATUS go to it only when it knows them (1.1.0).
func (p *Plugin) delegateSupports(r *request, want string) bool {
	out, err := p.execDelegate(r, "VERSION")
	if err != nil {
		return false
	}
	var v struct {
		Supported []string `json:"supportedVersions"`
	}
	if json.Unmarshal(out, &v) != nil {
		return false
	}
	for _, s := range v.Supported {
		if s == want {
			return true
		}
	}
	return false
}

// delegateVerb passes CHECK, GC or STATUS on to the delegate IPAM plugin.
// GC and STATUS exist from CNI 1.1.0; an older delegate is left out.
func (p *Plugin) delegateVerb(r *request, command string) error {
	if r.conf.DelegateIPAM == "" {
		return nil
	}
	if (command == "GC" || command == "STATUS") && !p.delegateSupports(r, "1.1.0") {
		return nil
	}
	if _, err := p.execDelegate(r, command); err != nil {
		return fmt.Errorf("delegated IPAM %s %s: %w", r.conf.DelegateIPAM, command, err)
	}
	return nil
}
