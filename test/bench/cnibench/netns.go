//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/netns"
)

// nsPool creates container network namespaces pinned by bind mounts under
// one directory. The driver runs inside a private mount namespace (the one
// `ip netns exec` gives it), so the pins vanish with the driver even when it
// is killed, and the kernel frees the namespaces on its own.
type nsPool struct {
	dir string
}

// create makes a fresh network namespace pinned at dir/name.
func (p nsPool) create(name string) (string, error) {
	path := filepath.Join(p.dir, name)
	if err := netns.CreateAt(path); err != nil {
		return "", fmt.Errorf("create netns %s: %w", path, err)
	}
	return path, nil
}

// remove unpins a namespace created by create; a namespace that is already
// gone is not an error.
func (p nsPool) remove(path string) error { return netns.DeleteAt(path) }

// notOuterNetNS refuses to run in the namespace the script was started
// from (the machine's own): every bridge, sysctl and firewall rule the
// plugins create must land in a namespace the benchmark made.
func notOuterNetNS(outer string) error {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("stat own netns: %w", err)
	}
	other, err := os.Stat(outer)
	if err != nil {
		return fmt.Errorf("stat outer netns %s: %w", outer, err)
	}
	if os.SameFile(self, other) {
		return errors.New("refusing to run in the outer network namespace; start me with `ip netns exec <bench-ns>`")
	}
	return nil
}

// hostNS is the namespace that plays the host for one plugin
// configuration. Plugins are exec'd from a locked thread that has joined
// it, so the child starts there just as it would under a runtime on a real
// host, without an extra exec of ip(8) or nsenter in the timed path.
type hostNS struct {
	path string
	file *os.File
}

func openHostNS(path string) (*hostNS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open host netns: %w", err)
	}
	return &hostNS{path: path, file: f}, nil
}

// do runs fn on a fresh locked thread inside the host namespace. The thread
// is never unlocked, so the runtime discards it afterwards.
func (h *hostNS) do(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(h.file.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", h.path, err)
			return
		}
		// Belt and braces: never exec a plugin anywhere but the bench
		// namespace.
		cur, err := os.Stat("/proc/thread-self/ns/net")
		want, err2 := os.Stat(h.path)
		if err != nil || err2 != nil || !os.SameFile(cur, want) {
			errc <- fmt.Errorf("thread is not in %s after setns", h.path)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

func notSameNS(a, b string) error {
	sa, err := os.Stat(a)
	if err != nil {
		return err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return err
	}
	if os.SameFile(sa, sb) {
		return fmt.Errorf("%s is the outer network namespace", a)
	}
	return nil
}
