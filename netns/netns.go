// Package netns creates, enters and removes named network namespaces, and
// runs code inside them. Everything that depends on the current network
// namespace goes through Do, which runs the function on a fresh goroutine
// locked to its OS thread, so the caller's thread never changes namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// RunDir is where named namespaces are bind-mounted, as `ip netns` does.
const RunDir = "/run/netns"

// Path returns the path of the named namespace.
func Path(name string) string { return filepath.Join(RunDir, name) }

// Do runs fn with the calling goroutine's thread inside the namespace at path.
func Do(path string, fn func() error) error {
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return fn() })
}

// Check returns an error unless path names a network namespace.
func Check(path string) error {
	if err := ns.IsNSorErr(path); err != nil {
		return fmt.Errorf("netns %q: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("netns %q: %w", path, err)
	}
	// nsfs (and procfs for /proc/PID/ns/net) both pass IsNSorErr; make
	// sure it really is a *network* namespace and not, say, a mount ns.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %q: %w", path, err)
	}
	defer unix.Close(fd)
	typ, err := ioctlNSType(fd)
	if err == nil && typ != unix.CLONE_NEWNET {
		return fmt.Errorf("netns %q: not a network namespace", path)
	}
	return nil
}

// ioctlNSType asks the kernel which kind of namespace fd refers to.
func ioctlNSType(fd int) (int, error) {
	const nsGetNSType = 0xb703 // NS_GET_NSTYPE
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nsGetNSType, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// Same reports whether two paths refer to the same namespace.
func Same(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

// IsCurrent reports whether path is the namespace the calling thread is in.
func IsCurrent(path string) (bool, error) {
	return Same(path, fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
}

// Create makes a new named network namespace with its loopback up and
// returns its path. It fails if the name is taken.
func Create(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("netns name %q is not valid", name)
	}
	if err := ensureRunDir(); err != nil {
		return "", err
	}
	path := Path(name)
	if err := CreateAt(path); err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	return path, nil
}

// CreateAt makes a new network namespace with its loopback up, pinned by a
// bind mount on path (a new file in an existing directory).
func CreateAt(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		err = unix.Mount(self, path, "none", unix.MS_BIND, "")
		if err == nil {
			err = setLoopbackUp()
		}
		// Go back before the thread is handed to anyone else. If that
		// fails the thread stays locked and dies with this goroutine.
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		_ = DeleteAt(path)
		return err
	}
	return nil
}

// Delete removes a named namespace; a missing one is not an error.
func Delete(name string) error { return DeleteAt(Path(name)) }

// DeleteAt unpins and removes a namespace pinned at path; a missing one is
// not an error. The kernel frees it once nothing else holds it.
func DeleteAt(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// ensureRunDir makes RunDir a shared mount, as iproute2 does, so namespaces
// created here are visible to runtimes living in other mount namespaces.
func ensureRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", RunDir, err)
	}
	if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", RunDir, err)
	}
	if err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", RunDir, err)
	}
	return nil
}
