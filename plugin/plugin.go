// Package plugin implements the zonenet CNI verbs. Each attachment mode
// (bridge, host, none) lives in its own file behind the attacher interface;
// this file holds what the verbs share: loading the configuration and the
// CNI arguments, the store, and the result.
package plugin

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/daemon/api"
	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/netns"
)

// Plugin carries what the verbs need from outside: no package state.
type Plugin struct {
	IPT  acl.Runner
	Sets acl.MemberSets
	// Conntrack is where the connections a newly installed policy
	// forbids are cut; nil leaves them running.
	Conntrack   acl.ConntrackTable
	LockTimeout time.Duration
	// DaemonTimeout bounds a call to zonenetd in cluster mode.
	DaemonTimeout time.Duration
	Now           func() time.Time
	Stdout        io.Writer
	Stderr        io.Writer
	// Fault, when set, names a step at which ADD fails on purpose
	// ("after-ipam", "after-veth"), so tests can prove the rollback.
	Fault string
}

// New returns a Plugin wired to the real system.
func New() *Plugin {
	return &Plugin{
		IPT:           acl.Exec{},
		Sets:          acl.NetlinkSets{},
		Conntrack:     acl.KernelConntrack{},
		LockTimeout:   10 * time.Second,
		DaemonTimeout: api.DefaultTimeout,
		Now:           time.Now,
		Stdout:        os.Stdout,
		Stderr:        os.Stderr,
	}
}

// request is one verb's parsed input.
type request struct {
	cmd  *skel.CmdArgs
	conf *conf.NetConf
	args conf.Args
	key  ipam.Key
}

// loadMode says how much of the input a verb needs.
type loadMode int

const (
	forAttach   loadMode = iota // ADD, CHECK: everything, strictly
	forTeardown                 // DEL: the network, not the per-container input
	forNetwork                  // GC, STATUS: the network only
)

func (p *Plugin) load(cmd *skel.CmdArgs, mode loadMode) (*request, error) {
	parse := conf.Parse
	if mode != forAttach {
		// The runtime repeats ADD's input on DEL: what made ADD fail
		// must not make the container impossible to delete.
		parse = conf.ParseForTeardown
	}
	c, err := parse(cmd.StdinData)
	if err != nil {
		return nil, err
	}
	var a conf.Args
	if mode == forAttach {
		if a, err = conf.ParseArgs(cmd.Args); err != nil {
			return nil, err
		}
	}
	if mode != forNetwork {
		if err := checkContainerID(cmd.ContainerID); err != nil {
			return nil, err
		}
	}
	return &request{
		cmd:  cmd,
		conf: c,
		args: a,
		key:  ipam.Key{Network: c.Name, ContainerID: cmd.ContainerID, IfName: cmd.IfName},
	}, nil
}

// checkContainerID adds what the CNI library's own check lets through:
// container IDs become file and store keys, so no path tricks.
func checkContainerID(id string) error {
	if id == "" {
		return &conf.Error{Code: types.ErrInvalidEnvironmentVariables, Key: "CNI_CONTAINERID", Msg: "is required"}
	}
	if strings.Contains(id, "..") || strings.ContainsAny(id, "/\\\x00") {
		return &conf.Error{Code: types.ErrInvalidEnvironmentVariables, Key: "CNI_CONTAINERID", Value: id,
			Msg: "must not contain '..', '/' or '\\'"}
	}
	return nil
}

// checkNetns refuses a CNI_NETNS that is not a network namespace.
func checkNetns(path string) error {
	if err := netns.Check(path); err != nil {
		return &conf.Error{Code: types.ErrInvalidNetNS, Key: "CNI_NETNS", Value: path,
			Msg: "is not usable: " + err.Error()}
	}
	return nil
}

func (r *request) storePath() string { return ipam.PathIn(r.conf.DataDir) }

// withStore opens the store, runs fn and closes it again, so the file
// lock is held only for the store transaction, not the netlink work.
func (p *Plugin) withStore(path string, fn func(*ipam.Store) error) error {
	s, err := ipam.Open(path, p.LockTimeout)
	if err != nil {
		return err
	}
	err = fn(s)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close store %s: %w", path, cerr)
	}
	return err
}

func (p *Plugin) printResult(r *request, res *current.Result) error {
	return printResult(p.Stdout, res, r.conf.CNIVersion)
}

func printResult(w io.Writer, res types.Result, version string) error {
	conv, err := res.GetAsVersion(version)
	if err != nil {
		return &types.Error{Code: types.ErrIncompatibleCNIVersion, Msg: "convert result", Details: err.Error()}
	}
	return conv.PrintTo(w)
}

func (p *Plugin) warnf(format string, a ...any) {
	if p.Stderr != nil {
		fmt.Fprintf(p.Stderr, "zonenet: "+format+"\n", a...)
	}
}
