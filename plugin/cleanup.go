package plugin

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/acl"
)

// A host cleanup (zonenetctl cleanup) removes what zonenet owns in the
// current network namespace once its containers are gone, with no
// configuration or store to go by: every chain and ipset named as ours
// (acl.PlanCleanup), and every bridge whose alias says zonenet made it.
// A bridge zonenet adopted keeps everything but its alias; any other
// link is never touched.

// The prefixes of the ownership marks bridgedev.go writes into aliases.
const (
	aliasMade    = "zonenet:"
	aliasNew     = "zonenet-new:"
	aliasAdopted = "zonenet-adopted:"
)

// containerPortRE matches the host veths zonenet names (hostVethName).
var containerPortRE = regexp.MustCompile(`^zn[0-9a-f]{12}$`)

// HostBridge is a bridge of the current namespace as a cleanup sees it.
type HostBridge struct {
	Name, Alias string
	Ports       []string // names of the links enslaved to it
}

// made reports whether zonenet created the bridge.
func (b HostBridge) made() bool {
	return strings.HasPrefix(b.Alias, aliasMade) || strings.HasPrefix(b.Alias, aliasNew)
}

func (b HostBridge) adopted() bool { return strings.HasPrefix(b.Alias, aliasAdopted) }

// busyPorts are the ports that make removing the bridge's zonenet state
// cut a container off: any port of a bridge we made (it goes with the
// bridge), a zonenet container's host veth on one we adopted.
func (b HostBridge) busyPorts() []string {
	if b.made() {
		return b.Ports
	}
	var out []string
	for _, p := range b.Ports {
		if b.adopted() && containerPortRE.MatchString(p) {
			out = append(out, p)
		}
	}
	return out
}

// HostLinks are the links of the current namespace a cleanup reads and
// changes.
type HostLinks interface {
	Bridges() ([]HostBridge, error)
	DeleteBridge(name string) error
	ClearAlias(name string) error
}

// NetlinkLinks is HostLinks over netlink in the current network namespace.
type NetlinkLinks struct{}

// Bridges implements HostLinks.
func (NetlinkLinks) Bridges() ([]HostBridge, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	byIndex := map[int]*HostBridge{}
	var out []*HostBridge
	for _, l := range links {
		if _, ok := l.(*netlink.Bridge); ok {
			b := &HostBridge{Name: l.Attrs().Name, Alias: l.Attrs().Alias}
			byIndex[l.Attrs().Index] = b
			out = append(out, b)
		}
	}
	for _, l := range links {
		if b := byIndex[l.Attrs().MasterIndex]; b != nil {
			b.Ports = append(b.Ports, l.Attrs().Name)
		}
	}
	res := make([]HostBridge, len(out))
	for i, b := range out {
		sort.Strings(b.Ports)
		res[i] = *b
	}
	return res, nil
}

// DeleteBridge implements HostLinks; a bridge already gone is fine.
func (NetlinkLinks) DeleteBridge(name string) error {
	l, err := netlinksafe.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err == nil {
		err = netlink.LinkDel(l)
	}
	if err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// ClearAlias implements HostLinks.
func (NetlinkLinks) ClearAlias(name string) error {
	l, err := netlinksafe.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetAlias(l, "")
	}
	if err != nil {
		return fmt.Errorf("clear alias of bridge %s: %w", name, err)
	}
	return nil
}

// CleanupOptions say where and how a host cleanup works.
type CleanupOptions struct {
	IPT    acl.Runner
	IPSets acl.Sets
	Links  HostLinks
	// DryRun reports what would be removed and changes nothing.
	DryRun bool
	// Force goes on although containers are still attached: their
	// zonenet bridges are deleted under them.
	Force bool
	// Report receives one line per object removed (or, in a dry run,
	// that would be); nil discards them.
	Report func(line string)
}

// BusyError refuses a cleanup while zonenet bridges still have container
// ports; nothing has been changed.
type BusyError struct {
	Bridges []HostBridge
}

func (e *BusyError) Error() string {
	var parts []string
	for _, b := range e.Bridges {
		parts = append(parts, fmt.Sprintf("%s (%s) has ports %s", b.Name, b.Alias, strings.Join(b.busyPorts(), ", ")))
	}
	return "containers are still attached: bridge " + strings.Join(parts, "; bridge ") +
		"; delete them through the runtime first, or use --force"
}

// Cleanup removes every zonenet chain, rule, ipset and bridge of the
// current network namespace and returns how many objects it removed (in
// a dry run: found). It holds the acl lock throughout, so no zonenet
// process changes the tables between the look and the removal. With
// containers still attached it refuses (a *BusyError) before changing
// anything, unless o.Force. Running it again finds nothing.
func Cleanup(o CleanupOptions) (int, error) {
	verb := "removed "
	if o.DryRun {
		verb = "would remove "
	}
	n := 0
	report := func(line string) {
		n++
		if o.Report != nil {
			o.Report(verb + line)
		}
	}
	err := acl.WithLock(o.IPT, func() error {
		bridges, err := o.Links.Bridges()
		if err != nil {
			return err
		}
		var busy []HostBridge
		for _, b := range bridges {
			if len(b.busyPorts()) > 0 {
				busy = append(busy, b)
			}
		}
		if len(busy) > 0 && !o.Force {
			return &BusyError{Bridges: busy}
		}
		plan, err := acl.PlanCleanup(o.IPT)
		if err != nil {
			return err
		}
		if o.DryRun {
			for _, it := range plan.Items() {
				report(it)
			}
		} else if err := plan.Apply(o.IPT, report); err != nil {
			return err
		}
		// Sets go after the rules that use them, or the kernel refuses.
		var errs []error
		errs = append(errs, acl.DestroyOwnSets(o.IPSets, o.DryRun, func(name string) { report("ipset " + name) }))
		for _, b := range bridges {
			errs = append(errs, cleanBridge(o, b, report))
		}
		return errors.Join(errs...)
	})
	return n, err
}

// cleanBridge deletes a bridge zonenet made, or takes the mark off one it
// adopted; any other is left alone.
func cleanBridge(o CleanupOptions, b HostBridge, report func(string)) error {
	switch {
	case b.made():
		what := fmt.Sprintf("bridge %s (alias %q)", b.Name, b.Alias)
		if len(b.Ports) > 0 {
			what += ", detaching " + strings.Join(b.Ports, ", ")
		}
		if !o.DryRun {
			if err := o.Links.DeleteBridge(b.Name); err != nil {
				return err
			}
		}
		report(what)
	case b.adopted():
		if !o.DryRun {
			if err := o.Links.ClearAlias(b.Name); err != nil {
				return err
			}
		}
		report(fmt.Sprintf("alias %q of bridge %s (not made by zonenet: the bridge stays)", b.Alias, b.Name))
	}
	return nil
}
