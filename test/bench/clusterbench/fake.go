//go:build linux

package main

// Fake nodes: registrations written into etcd with the cluster package,
// each under its own lease, with an underlay address, a VTEP MAC and a
// block, as a real zonenetd writes them. The writer runs as a child of
// this command inside the underlay namespace (etcd listens there only; the
// gRPC client's goroutines cannot be pinned to another namespace), and
// takes one command a line on stdin, answering "ok ..." or "error ..." on
// stdout:
//
//	open N        a Store per fake node fake-01..fake-N (connections made)
//	register      all of them at once: Register, then ClaimBlock
//	claim NAME    a block for NAME, which need not be registered
//	revoke NAME   Deregister: the lease is revoked, the record goes at once
//	stop NAME     Close without leaving: the record expires with the lease

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/overlay"
	"github.com/zonenet/zonenet/pki"
)

// fakeUnderlay is fake node i's underlay address: no such host exists,
// and nothing is ever sent to it.
func fakeUnderlay(i int) netip.Addr { return netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}) }

func fakeName(i int) string { return fmt.Sprintf("fake-%02d", i) }

// fakeMain is the child: `clusterbench fake -etcd URL -ca F -cert F -key F -prefix P -ttl D`.
func fakeMain(args []string) int {
	fs := flag.NewFlagSet("fake", flag.ContinueOnError)
	etcd := fs.String("etcd", "", "etcd URL")
	ca, cert, key := fs.String("ca", "", ""), fs.String("cert", "", ""), fs.String("key", "", "")
	prefix := fs.String("prefix", "", "key prefix")
	ttl := fs.Duration("ttl", 5*time.Second, "node TTL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tlsCfg, err := pki.Files{CA: *ca, Cert: *cert, Key: *key}.ClientConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := cluster.Config{Endpoints: []string{*etcd}, TLS: tlsCfg, Prefix: *prefix, NodeTTL: *ttl}
	f := &fakes{cfg: cfg, stores: map[string]*cluster.Store{}}
	defer f.closeAll()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(in.Text()), " ")
		reply, err := f.do(cmd, arg)
		if err != nil {
			fmt.Printf("error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Printf("ok %s\n", reply)
	}
	return 0
}

type fakes struct {
	cfg    cluster.Config
	mu     sync.Mutex // guards names and stores, filled in parallel
	names  []string
	stores map[string]*cluster.Store
	claim  *cluster.Store // claims for names that are not fakes
}

func (f *fakes) do(cmd, arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch cmd {
	case "open":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 || n > 250 {
			return "", fmt.Errorf("open %q: want 1-250", arg)
		}
		return "", f.parallel(n, func(i int) error {
			s, err := cluster.Open(ctx, f.cfg)
			if err != nil {
				return err
			}
			f.set(fakeName(i), s)
			return nil
		})
	case "register":
		return "", f.parallel(len(f.names), func(i int) error {
			name := fakeName(i)
			s := f.get(name)
			err := s.Register(ctx, cluster.Node{Name: name, Underlay: fakeUnderlay(i), VTEPMAC: overlay.DeriveMAC(name).String()})
			if err != nil {
				return err
			}
			_, err = s.ClaimBlock(ctx, blockReq(name))
			return err
		})
	case "claim":
		var err error
		if f.claim == nil {
			if f.claim, err = cluster.Open(ctx, f.cfg); err != nil {
				return "", err
			}
		}
		b, err := f.claim.ClaimBlock(ctx, blockReq(arg))
		return b.Prefix.String(), err
	case "revoke", "stop":
		s := f.get(arg)
		if s == nil {
			return "", fmt.Errorf("no fake node %q", arg)
		}
		if cmd == "revoke" {
			if err := s.Deregister(ctx); err != nil {
				return "", err
			}
		}
		return "", s.Close()
	}
	return "", fmt.Errorf("unknown command %q", cmd)
}

func blockReq(node string) cluster.BlockRequest {
	return cluster.BlockRequest{Network: network, Zone: zone, Subnet: zoneSubnet, BlockBits: blockBits, Node: node}
}

// parallel runs fn for fake nodes 1..n at once; all of them, as a burst
// of nodes joining together would.
func (f *fakes) parallel(n int, fn func(i int) error) error {
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s: %w", fakeName(i), err)
		}
	}
	return nil
}

func (f *fakes) set(name string, s *cluster.Store) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stores[name] = s
	f.names = append(f.names, name)
}

func (f *fakes) get(name string) *cluster.Store {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stores[name]
}

func (f *fakes) closeAll() {
	for _, s := range f.stores {
		_ = s.Close()
	}
	if f.claim != nil {
		_ = f.claim.Close()
	}
}

// fakeClient is the driver's end of a fake-node writer.
type fakeClient struct {
	p   *proc
	in  io.WriteCloser
	out *bufio.Scanner
}

// startFakes runs the writer in the underlay namespace for the cluster
// under prefix.
func (b *bed) startFakes(prefix string, ttl time.Duration) (*fakeClient, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	files, err := b.issue("fakes")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", b.ul, self, "fake", "-etcd", b.etcdURL(),
		"-ca", files.CA, "-cert", files.Cert, "-key", files.Key, "-prefix", prefix, "-ttl", ttl.String())
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the fake-node writer: %w", err)
	}
	p := &proc{name: "fakes", cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return &fakeClient{p: p, in: in, out: bufio.NewScanner(out)}, nil
}

// call sends one command and waits for its answer.
func (c *fakeClient) call(format string, args ...any) (string, error) {
	line := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		return "", fmt.Errorf("fake writer: %s: %w", line, err)
	}
	if !c.out.Scan() {
		return "", fmt.Errorf("fake writer: %s: no answer (%v)", line, c.out.Err())
	}
	ans := c.out.Text()
	if rest, ok := strings.CutPrefix(ans, "ok"); ok {
		return strings.TrimSpace(rest), nil
	}
	return "", fmt.Errorf("fake writer: %s: %s", line, ans)
}
