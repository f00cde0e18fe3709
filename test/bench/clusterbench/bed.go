//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/zonenet/zonenet/netns"
	"github.com/zonenet/zonenet/pki"
)

// The bed: an underlay namespace holding a bridge and etcd, into which
// every node namespace is plugged. Addresses exist only inside these
// namespaces; nothing listens or routes in the machine's own.
var (
	ulNet    = netip.MustParsePrefix("192.168.231.0/24")
	etcdAddr = netip.MustParseAddr("192.168.231.254")
)

const etcdPort = 2379

// bed owns every namespace and process of a run, so that cleanup ends
// exactly those: processes by their PID, namespaces by name.
type bed struct {
	tag    string
	dir    string // certificates, configs, data, logs
	ca     *pki.CA
	ul     string // underlay namespace name
	bridge string
	log    func(string, ...any)

	mu    sync.Mutex
	nss   []string
	procs []*proc
	seq   int
}

// proc is a process started in a namespace with `ip netns exec`, which
// execs it in place: the PID is the program's own.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func newBed(tag, dir string, logf func(string, ...any)) (*bed, error) {
	b := &bed{tag: tag, dir: dir, log: logf, bridge: "zncb" + tag}
	if len(b.bridge) > 15 {
		b.bridge = b.bridge[:15]
	}
	var err error
	if b.ca, err = pki.NewCA(pki.CASpec{Name: "clusterbench CA"}); err != nil {
		return nil, err
	}
	if err := b.ca.Write(dir, false); err != nil {
		return nil, err
	}
	if b.ul, err = b.newNS("ul"); err != nil {
		return nil, err
	}
	err = b.withHandle(b.ul, func(h *netlink.Handle) error {
		// A fixed MAC: a bridge without one takes its lowest port's and
		// changes it when that port goes, as a node dies here.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.bridge,
			HardwareAddr: net.HardwareAddr{0x02, 0x7a, 0x6e, 0x00, 0x00, 0x02}}}
		if err := h.LinkAdd(br); err != nil {
			return err
		}
		if err := h.AddrAdd(br, addrOf(netip.PrefixFrom(etcdAddr, ulNet.Bits()))); err != nil {
			return err
		}
		return h.LinkSetUp(br)
	})
	if err != nil {
		return nil, fmt.Errorf("underlay bridge: %w", err)
	}
	return b, nil
}

// newNS makes a namespace named zncb-TAG-WHAT-N, which cleanup removes.
func (b *bed) newNS(what string) (string, error) {
	b.mu.Lock()
	b.seq++
	name := fmt.Sprintf("zncb-%s-%s-%d", b.tag, what, b.seq)
	b.mu.Unlock()
	if _, err := netns.Create(name); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.nss = append(b.nss, name)
	b.mu.Unlock()
	return name, nil
}

func (b *bed) deleteNS(name string) error { return netns.Delete(name) }

func (b *bed) withHandle(ns string, fn func(h *netlink.Handle) error) error {
	nh, err := vnetns.GetFromPath(netns.Path(ns))
	if err != nil {
		return err
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// plug gives ns a veth into the underlay bridge holding addr.
func (b *bed) plug(ns string, addr netip.Addr) error {
	b.mu.Lock()
	b.seq++
	ulEnd, nodeEnd := fmt.Sprintf("cbu%s%d", b.tag, b.seq), fmt.Sprintf("cbn%s%d", b.tag, b.seq)
	b.mu.Unlock()
	if len(ulEnd) > 15 || len(nodeEnd) > 15 {
		return fmt.Errorf("tag %q makes link names longer than 15 bytes", b.tag)
	}
	nh, err := vnetns.GetFromPath(netns.Path(ns))
	if err != nil {
		return err
	}
	defer nh.Close()
	err = b.withHandle(b.ul, func(h *netlink.Handle) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ulEnd}, PeerName: nodeEnd, PeerNamespace: netlink.NsFd(int(nh))}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		l, err := h.LinkByName(ulEnd)
		if err != nil {
			return err
		}
		br, err := h.LinkByName(b.bridge)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(l, br); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	if err != nil {
		return fmt.Errorf("plug %s: %w", ns, err)
	}
	return b.withHandle(ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(nodeEnd)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, addrOf(netip.PrefixFrom(addr, ulNet.Bits()))); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
}

func addrOf(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
}

// issue writes a certificate of the bed's CA for name.
func (b *bed) issue(name string, ips ...netip.Addr) (pki.Files, error) {
	p, err := b.ca.Issue(pki.CertSpec{Name: name, IPs: ips})
	if err == nil {
		err = p.Write(b.dir, name, true)
	}
	return pki.DirFiles(b.dir, name), err
}

// start runs argv inside ns, its output in DIR/NAME.log.
func (b *bed) start(ns, name string, argv ...string) (*proc, error) {
	log := filepath.Join(b.dir, name+".log")
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// kill ends the process with SIGKILL, as a crash or a dead machine.
func (p *proc) kill() {
	if p.running() {
		_ = syscall.Kill(p.pid(), syscall.SIGKILL)
		<-p.exited
	}
}

// stop ends the process with SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() {
	if !p.running() {
		return
	}
	_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

// startEtcd runs etcd in the underlay namespace with mutual TLS 1.3 only
// (etcd 3.4 has no minimum version: one TLS 1.2 suite that needs an RSA
// key, with an ECDSA key, leaves TLS 1.3 the only way in).
func (b *bed) startEtcd() error {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("etcd not found: run `make setup` (installs Debian's etcd-server): %w", err)
	}
	if _, err := b.issue("etcd", etcdAddr); err != nil {
		return err
	}
	client := fmt.Sprintf("https://%s:%d", etcdAddr, etcdPort)
	peer := fmt.Sprintf("https://%s:%d", etcdAddr, etcdPort+1)
	crt, key, ca := pki.CertPath(b.dir, "etcd"), pki.KeyPath(b.dir, "etcd"), pki.CACertPath(b.dir)
	p, err := b.start(b.ul, "etcd", bin,
		"--name", "clusterbench", "--data-dir", filepath.Join(b.dir, "etcd-data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "clusterbench="+peer, "--initial-cluster-state", "new",
		"--cert-file", crt, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
		"--peer-cert-file", crt, "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
		"--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := netns.Dial(netns.Path(b.ul), "tcp", netip.AddrPortFrom(etcdAddr, etcdPort).String(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.running() {
			return errors.New("etcd exited during start; see " + p.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd not listening after 20s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bed) etcdURL() string { return fmt.Sprintf("https://%s:%d", etcdAddr, etcdPort) }

// cleanup ends every process the bed started, zonenetd before etcd, and
// removes every namespace it made.
func (b *bed) cleanup() {
	b.mu.Lock()
	procs, nss := b.procs, b.nss
	b.procs, b.nss = nil, nil
	b.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	for _, ns := range nss {
		if err := netns.Delete(ns); err != nil {
			b.log("delete netns %s: %v", ns, err)
		}
	}
}
