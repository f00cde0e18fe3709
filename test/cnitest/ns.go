//go:build linux

package cnitest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/zonenet/zonenet/netns"
)

// RequireRoot skips the test unless it runs as root: namespaces, bridges and
// firewall rules need CAP_SYS_ADMIN and CAP_NET_ADMIN.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces, bridges and firewall rules (run `sudo go test ./test/integration/`)")
	}
}

var seq atomic.Uint64

// Unique returns a name that no other call in this process returns and
// that is unlikely to collide with another test process: prefix, a short
// process tag and a counter. It fits the 15 byte limit of interface names
// when prefix is at most 5 bytes.
func Unique(t testing.TB, prefix string) string {
	t.Helper()
	n := seq.Add(1)
	pid := strconv.FormatInt(int64(os.Getpid()%(36*36*36)), 36)
	name := fmt.Sprintf("%s%s%s", prefix, pid, strconv.FormatUint(n, 36))
	if len(name) > 15 {
		t.Fatalf("Unique(%q) = %q is longer than an interface name may be", prefix, name)
	}
	return name
}

var subnetSeq atomic.Uint64

// Subnet4 returns a fresh /24 in 10.100.0.0-10.199.255.0, different on
// every call in this process, so tests running in parallel never share one.
func Subnet4(t testing.TB) netip.Prefix {
	t.Helper()
	n := subnetSeq.Add(1)
	if n >= 100*256 {
		t.Fatal("cnitest: out of test subnets")
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + n/256), byte(n % 256), 0}), 24)
}

// Subnet6 returns a fresh /64 under fd5a::/16.
func Subnet6(t testing.TB) netip.Prefix {
	t.Helper()
	n := subnetSeq.Add(1)
	a := [16]byte{0xfd, 0x5a, byte(n >> 8), byte(n)}
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

// Nth returns the n-th address of p (0 is the network address).
func Nth(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	return a
}

// NS is a named network namespace made for a test.
type NS struct {
	Name string
	Path string
}

func (n *NS) String() string { return n.Path }

// NewNS creates a named namespace with lo up and deletes it when the test
// ends. Deleting the namespace destroys every link, address, route and
// firewall rule inside it, so even a plugin that leaks cannot affect the
// machine or other tests.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { _ = netns.Delete(name) })
	return &NS{Name: name, Path: path}
}

// HostNS creates a namespace that plays the host for one test: the plugin
// runs inside it and creates its bridges, host veths and rules there.
func HostNS(t testing.TB) *NS { t.Helper(); return NewNS(t, "znt-host") }

// ContainerNS creates a namespace that plays a container.
func ContainerNS(t testing.TB) *NS { t.Helper(); return NewNS(t, "znt-ctr") }

// Delete removes the namespace now (the cleanup then has nothing to do).
func (n *NS) Delete(t testing.TB) {
	t.Helper()
	if err := netns.Delete(n.Name); err != nil {
		t.Fatalf("delete netns %s: %v", n.Name, err)
	}
}

// Do runs fn inside the namespace on a locked thread.
func (n *NS) Do(fn func() error) error { return netns.Do(n.Path, fn) }

// Run runs a command inside the namespace (as `ip netns exec` does: with
// its own /sys) and returns its standard output.
func (n *NS) Run(t testing.TB, argv ...string) []byte {
	t.Helper()
	out, err := n.RunErr(argv...)
	if err != nil {
		t.Fatalf("%s in %s: %v", strings.Join(argv, " "), n.Name, err)
	}
	return out
}

// RunErr is Run returning the error instead of failing the test.
func (n *NS) RunErr(argv ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Sysctl reads a sysctl of the namespace, e.g. "net/ipv4/ip_forward".
func (n *NS) Sysctl(t testing.TB, key string) string {
	t.Helper()
	var v []byte
	err := n.Do(func() error {
		var err error
		v, err = os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
		return err
	})
	if err != nil {
		t.Fatalf("sysctl %s in %s: %v", key, n, err)
	}
	return strings.TrimSpace(string(v))
}

// SetLoopbackDown takes lo down, for tests that check a plugin brings it up.
func (n *NS) SetLoopbackDown(t testing.TB) {
	t.Helper()
	err := n.WithHandle(func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetDown(lo)
	})
	if err != nil {
		t.Fatalf("lo down in %s: %v", n, err)
	}
}

// IsUp reports whether the link is administratively up.
func IsUp(l netlink.Link) bool { return l.Attrs().Flags&unix.IFF_UP != 0 }

// AddDummy adds a dummy link with the given addresses (CIDR notation) and
// sets it up. Kernels built without the dummy driver get a port-less
// bridge instead, which serves the same purpose: a local link that holds
// addresses.
func (n *NS) AddDummy(t testing.TB, name string, addrs ...string) {
	t.Helper()
	err := n.WithHandle(func(h *netlink.Handle) error {
		err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}})
		}
		if err != nil {
			return err
		}
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			na, err := netlink.ParseAddr(a)
			if err != nil {
				return err
			}
			if a := netip.MustParsePrefix(a); a.Addr().Is6() {
				na.Flags |= unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(l, na); err != nil {
				return fmt.Errorf("add %s: %w", a, err)
			}
		}
		return h.LinkSetUp(l)
	})
	if err != nil {
		t.Fatalf("dummy %s in %s: %v", name, n, err)
	}
}

// Connect joins two namespaces with a veth pair, addresses both ends
// (CIDR notation, e.g. "192.168.7.1/30") and sets them up. The names are
// chosen here and returned.
func Connect(t testing.TB, a *NS, addrA string, b *NS, addrB string) (nameA, nameB string) {
	t.Helper()
	nameA, nameB = Unique(t, "tva"), Unique(t, "tvb")
	bh, err := vnetns.GetFromPath(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	err = a.WithHandle(func(h *netlink.Handle) error {
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: nameA},
			PeerName:      nameB,
			PeerNamespace: netlink.NsFd(int(bh)),
		}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		return upWithAddr(h, nameA, addrA)
	})
	if err != nil {
		t.Fatalf("veth %s in %s: %v", nameA, a, err)
	}
	err = b.WithHandle(func(h *netlink.Handle) error { return upWithAddr(h, nameB, addrB) })
	if err != nil {
		t.Fatalf("veth %s in %s: %v", nameB, b, err)
	}
	return nameA, nameB
}

func upWithAddr(h *netlink.Handle, name, cidr string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if cidr != "" {
		na, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, na); err != nil {
			return err
		}
	}
	return h.LinkSetUp(l)
}

// AddVethPair adds a veth pair with both ends in the namespace, both up:
// a link that is neither a bridge nor a dummy, to occupy a name.
func (n *NS) AddVethPair(t testing.TB, name, peer string) {
	t.Helper()
	err := n.WithHandle(func(h *netlink.Handle) error {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
			return err
		}
		if err := upWithAddr(h, name, ""); err != nil {
			return err
		}
		return upWithAddr(h, peer, "")
	})
	if err != nil {
		t.Fatalf("veth pair %s/%s in %s: %v", name, peer, n, err)
	}
}

// DelLink removes a link from the namespace.
func (n *NS) DelLink(t testing.TB, name string) {
	t.Helper()
	err := n.WithHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		return h.LinkDel(l)
	})
	if err != nil {
		t.Fatalf("delete %s in %s: %v", name, n, err)
	}
}

// DelAddr removes an address (CIDR notation) from a link.
func (n *NS) DelAddr(t testing.TB, link string, cidr string) {
	t.Helper()
	err := n.WithHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(link)
		if err != nil {
			return err
		}
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		return h.AddrDel(l, a)
	})
	if err != nil {
		t.Fatalf("delete %s from %s in %s: %v", cidr, link, n, err)
	}
}

// WaitAddrsReady waits until no address of the namespace is tentative
// (IPv6 duplicate address detection), so sockets can bind and connect.
func (n *NS) WaitAddrsReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tentative := ""
		err := n.WithHandle(func(h *netlink.Handle) error {
			addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V6) })
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if a.Flags&unix.IFA_F_TENTATIVE != 0 {
					tentative = a.IPNet.String()
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("addresses in %s: %v", n, err)
		}
		if tentative == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("address %s in %s still tentative after %s", tentative, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
