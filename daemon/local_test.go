package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zonenet/zonenet/daemon"
	"github.com/zonenet/zonenet/daemon/api"
	"github.com/zonenet/zonenet/daemon/daemontest"
	"github.com/zonenet/zonenet/ipam"
)

const network = "prod"

var subnet = netip.MustParsePrefix("10.0.1.0/24")

// serve runs srv on a fresh socket until the test ends or stop is called.
func serve(t *testing.T, srv *daemon.LocalServer) (api.Client, func()) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "zonenetd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, sock) }()
	c := api.Client{Socket: sock, Timeout: 5 * time.Second}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Health(context.Background()); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the local endpoint did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve returned %v after cancel", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

func blockReq(zone string, full ...netip.Prefix) api.BlockRequest {
	return api.BlockRequest{Network: network, Zone: zone, Subnet: subnet, BlockSize: 26, Full: full}
}

func storeBlocks(t *testing.T, dataDir, zone string) []netip.Prefix {
	t.Helper()
	s, err := ipam.Open(ipam.PathIn(dataDir), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, err := s.Blocks(network, zone)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// burst sends n requests at once and returns the answers.
func burst(t *testing.T, c api.Client, n int, req api.BlockRequest) []api.BlockResponse {
	t.Helper()
	out := make([]api.BlockResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = c.ClaimBlock(context.Background(), req)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBurstClaimsOneBlock: 20 requests of a full node at once claim one
// block, and all of them are answered with it.
func TestBurstClaimsOneBlock(t *testing.T) {
	dir := t.TempDir()
	fake := &daemontest.Claimer{Delay: 50 * time.Millisecond}
	c, _ := serve(t, daemon.NewLocalServer(dir, fake, nil))
	b0 := netip.MustParsePrefix("10.0.1.0/26")
	b1 := netip.MustParsePrefix("10.0.1.64/26")
	for round, tc := range []struct {
		full []netip.Prefix
		want netip.Prefix
	}{{nil, b0}, {[]netip.Prefix{b0}, b1}} {
		answers := burst(t, c, 20, blockReq("frontend", tc.full...))
		claimed := 0
		for _, a := range answers {
			if a.Block != tc.want || a.Store != ipam.PathIn(dir) {
				t.Errorf("round %d: answer %+v, want block %s in %s", round, a, tc.want, ipam.PathIn(dir))
			}
			if a.Claimed {
				claimed++
			}
		}
		if claimed != 1 || fake.Calls() != round+1 {
			t.Errorf("round %d: %d answers say claimed, %d claims made; want 1 and %d", round, claimed, fake.Calls(), round+1)
		}
	}
	if got := storeBlocks(t, dir, "frontend"); !slices.Equal(got, []netip.Prefix{b0, b1}) {
		t.Errorf("store holds %v, want [%s %s]", got, b0, b1)
	}
	// Another zone has its own blocks (the fake counts per subnet).
	other := blockReq("backend")
	other.Subnet = netip.MustParsePrefix("10.0.2.0/24")
	if a, err := c.ClaimBlock(context.Background(), other); err != nil || a.Block.String() != "10.0.2.0/26" || !a.Claimed {
		t.Errorf("other zone: %+v, %v", a, err)
	}
}

// lockingClaimer allocates from the store while it claims, as a plugin
// exec on the node may: the server must not hold the store's lock.
type lockingClaimer struct {
	daemontest.Claimer
	path string
}

func (l *lockingClaimer) Claim(ctx context.Context, network, zone string, subnet netip.Prefix, bits int) (netip.Prefix, error) {
	s, err := ipam.Open(l.path, 500*time.Millisecond)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("store locked during the claim: %w", err)
	}
	s.Close()
	return l.Claimer.Claim(ctx, network, zone, subnet, bits)
}

func TestClaimWithoutStoreLock(t *testing.T) {
	dir := t.TempDir()
	c, _ := serve(t, daemon.NewLocalServer(dir, &lockingClaimer{path: ipam.PathIn(dir)}, nil))
	if _, err := c.ClaimBlock(context.Background(), blockReq("frontend")); err != nil {
		t.Fatal(err)
	}
}

func TestProblems(t *testing.T) {
	dir := t.TempDir()
	fake := &daemontest.Claimer{Limit: 1}
	srv := daemon.NewLocalServer(dir, fake, nil)
	srv.ClaimTimeout = 200 * time.Millisecond
	c, _ := serve(t, srv)
	ctx := context.Background()
	b0, err := c.ClaimBlock(ctx, blockReq("frontend"))
	if err != nil {
		t.Fatal(err)
	}
	expect := func(what string, err error, status int, code string, words ...string) {
		t.Helper()
		var p *api.Problem
		if !errors.As(err, &p) || p.Status != status || p.Code != code {
			t.Fatalf("%s: %v (%#v), want %d %s", what, err, p, status, code)
		}
		for _, w := range words {
			if !strings.Contains(p.Message, w) {
				t.Errorf("%s: message %q lacks %q", what, p.Message, w)
			}
		}
	}
	_, err = c.ClaimBlock(ctx, blockReq("frontend", b0.Block))
	expect("no free block", err, http.StatusConflict, api.CodeNoFreeBlock, "frontend", "no free /26 block")
	fake.Fail(daemon.ErrStoreUnreachable)
	_, err = c.ClaimBlock(ctx, blockReq("backend"))
	expect("unreachable", err, http.StatusServiceUnavailable, api.CodeStoreUnreachable, "cluster store unreachable")
	fake.Fail(nil)
	fake.Delay = time.Second
	_, err = c.ClaimBlock(ctx, blockReq("mgmt"))
	expect("slow cluster store", err, http.StatusServiceUnavailable, api.CodeStoreUnreachable, "within 200ms")
	fake.Delay = 0
	bad := blockReq("frontend")
	bad.BlockSize = 24
	_, err = c.ClaimBlock(ctx, bad)
	expect("block size", err, http.StatusBadRequest, api.CodeBadRequest, "blockSize 24")
	bad = blockReq("frontend", netip.MustParsePrefix("10.0.9.0/26"))
	_, err = c.ClaimBlock(ctx, bad)
	expect("foreign full block", err, http.StatusBadRequest, api.CodeBadRequest, "10.0.9.0/26")
	if got := storeBlocks(t, dir, "frontend"); !slices.Equal(got, []netip.Prefix{b0.Block}) {
		t.Errorf("store holds %v after the failures, want only %s", got, b0.Block)
	}
}

// badClaimer returns a block that is not one of the subnet.
type badClaimer struct{}

func (badClaimer) Claim(context.Context, string, string, netip.Prefix, int) (netip.Prefix, error) {
	return netip.MustParsePrefix("192.168.0.0/26"), nil
}

func TestClaimerAnswerChecked(t *testing.T) {
	dir := t.TempDir()
	c, _ := serve(t, daemon.NewLocalServer(dir, badClaimer{}, nil))
	_, err := c.ClaimBlock(context.Background(), blockReq("frontend"))
	var p *api.Problem
	if !errors.As(err, &p) || p.Code != api.CodeInternal || !strings.Contains(p.Message, "192.168.0.0/26") {
		t.Fatalf("foreign block from the claimer: %v", err)
	}
	if got := storeBlocks(t, dir, "frontend"); len(got) != 0 {
		t.Errorf("store recorded %v", got)
	}
}
