package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/daemon"
	"github.com/zonenet/zonenet/daemon/daemontest"
	"github.com/zonenet/zonenet/ipam"
)

// clusterReq is a cluster-mode request of the plugin on dataDir.
func clusterReq(t *testing.T, dataDir, socket, cid string) (*request, ipam.Request) {
	t.Helper()
	c, err := conf.Parse([]byte(fmt.Sprintf(`{"name":"prod","store":"etcd","dataDir":%q,"daemonSocket":%q,"blockSize":28,
		"zones":[{"name":"fe","subnet":"10.0.1.0/24"}]}`, dataDir, socket)))
	if err != nil {
		t.Fatal(err)
	}
	r := &request{conf: c, key: ipam.Key{Network: "prod", ContainerID: cid, IfName: "eth0"}}
	z := c.Zone("fe")
	return r, ipam.Request{Attachment: ipam.Attachment{Key: r.key, Zone: "fe", Mode: "bridge"}, Pools: ipamZone(z).Pools}
}

func serveDaemon(t *testing.T, dataDir string, cl daemon.Claimer) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "zonenetd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.NewLocalServer(dataDir, cl, nil).Serve(ctx, sock) }()
	t.Cleanup(func() { cancel(); <-done })
	p := &Plugin{DaemonTimeout: time.Second}
	for i := 0; ; i++ {
		r, _ := clusterReq(t, dataDir, sock, "x")
		if p.clusterStatus(r) == nil {
			return sock
		}
		if i == 500 {
			t.Fatal("zonenetd endpoint did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cniCode(t *testing.T, err error) (uint, string) {
	t.Helper()
	var te *types.Error
	if !errors.As(ToCNI(err), &te) {
		t.Fatalf("ToCNI(%v) is not a CNI error", err)
	}
	return te.Code, te.Msg
}

// TestAllocateInBlocksAsksOnlyWhenFull: the daemon is asked once per
// block, never while a block has room.
func TestAllocateInBlocksAsksOnlyWhenFull(t *testing.T) {
	dir := t.TempDir()
	fake := &daemontest.Claimer{}
	sock := serveDaemon(t, dir, fake)
	p := &Plugin{DaemonTimeout: time.Second, LockTimeout: time.Second}
	seen := map[netip.Addr]bool{}
	// /28 blocks of 10.0.1.0/24: 14 addresses in the first (network and
	// gateway), 16 in the next.
	for i := range 20 {
		r, req := clusterReq(t, dir, sock, fmt.Sprint("c", i))
		a, err := p.allocateInBlocks(r, req)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		ip := a.IPs[0].Addr()
		if seen[ip] || !netip.MustParsePrefix("10.0.1.0/27").Contains(ip) {
			t.Errorf("allocation %d got %s (seen before: %v)", i, ip, seen[ip])
		}
		seen[ip] = true
		if want := 1 + min(i, 14)/14; fake.Calls() != want {
			t.Errorf("after allocation %d: %d claims, want %d", i, fake.Calls(), want)
		}
	}
}

func TestAllocateInBlocksErrors(t *testing.T) {
	dir := t.TempDir()
	p := &Plugin{DaemonTimeout: time.Second, LockTimeout: time.Second}
	missing := filepath.Join(t.TempDir(), "run", "zonenetd.sock")

	r, req := clusterReq(t, dir, missing, "a")
	_, err := p.allocateInBlocks(r, req)
	if code, msg := cniCode(t, err); code != types.ErrTryAgainLater ||
		!strings.Contains(msg, "zonenetd is not running (no socket at "+missing+"): start zonenetd on this node") {
		t.Errorf("daemon down: code %d: %s", code, msg)
	}
	if code, msg := cniCode(t, p.clusterStatus(r)); code != types.ErrPluginNotAvailable || !strings.Contains(msg, "start zonenetd") {
		t.Errorf("STATUS with the daemon down: code %d: %s", code, msg)
	}

	fake := &daemontest.Claimer{Limit: 1}
	sock := serveDaemon(t, dir, fake)
	fake.Fail(daemon.ErrStoreUnreachable)
	r, req = clusterReq(t, dir, sock, "a")
	_, err = p.allocateInBlocks(r, req)
	if code, msg := cniCode(t, err); code != types.ErrTryAgainLater || !strings.Contains(msg, "cluster store unreachable") {
		t.Errorf("etcd down: code %d: %s", code, msg)
	}
	fake.Fail(nil)
	for i := 0; ; i++ {
		r, req = clusterReq(t, dir, sock, fmt.Sprint("b", i))
		if _, err = p.allocateInBlocks(r, req); err != nil {
			break
		}
	}
	if code, msg := cniCode(t, err); code != types.ErrTryAgainLater || !strings.Contains(msg, "no free /28 block") {
		t.Errorf("zone full in the cluster: code %d: %s", code, msg)
	}

	// zonenetd and the network on different data directories.
	other := t.TempDir()
	sock = serveDaemon(t, other, &daemontest.Claimer{})
	r, req = clusterReq(t, dir+"-elsewhere", sock, "c")
	_, err = p.allocateInBlocks(r, req)
	if code, msg := cniCode(t, err); code != types.ErrInvalidNetworkConfig || !strings.Contains(msg, "dataDir") ||
		!strings.Contains(msg, ipam.PathIn(other)) {
		t.Errorf("different data directories: code %d: %s", code, msg)
	}
}
