package ipam_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/ipam"
)

func TestPutGet(t *testing.T) {
	s, _ := openStore(t)
	a := ipam.Attachment{
		Key:       ipam.Key{Network: network, ContainerID: "deleg", IfName: "net1"},
		Zone:      "frontend",
		Mode:      "bridge",
		IPs:       []netip.Prefix{netip.MustParsePrefix("192.168.7.9/24"), netip.MustParsePrefix("fd00:7::9/64")},
		HostVeth:  "znabc123",
		Bridge:    "zn-prod-front",
		MAC:       "02:42:ac:11:00:02",
		Netns:     "/var/run/netns/x",
		Delegated: "host-local",
		Extra:     json.RawMessage(`{"portMappings":[{"hostPort":8080,"containerPort":80}]}`),
		Created:   created,
	}
	if err := s.Put(a); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.Get(a.Key)
	if err != nil || !found || !reflect.DeepEqual(got, a) {
		t.Fatalf("Get = %+v, %v, %v; want %+v", got, found, err, a)
	}
	if k, found, _ := s.Owner(network, addr("192.168.7.9")); !found || k != a.Key {
		t.Errorf("Owner of a delegated address = %v, %v", k, found)
	}

	// Host mode may report the same address for several containers: the
	// first holder stays the owner, and releasing the second keeps it.
	b := a
	b.Key.ContainerID = "second"
	if err := s.Put(b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Release(b.Key); err != nil {
		t.Fatal(err)
	}
	if k, found, _ := s.Owner(network, addr("192.168.7.9")); !found || k != a.Key {
		t.Errorf("Owner after releasing the second holder = %v, %v", k, found)
	}

	// Put replaces: the old addresses leave the index.
	a.IPs = []netip.Prefix{netip.MustParsePrefix("192.168.7.10/24")}
	if err := s.Put(a); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.Owner(network, addr("192.168.7.9")); found {
		t.Error("replaced address still owned")
	}
	if _, found, _ := s.Owner(network, addr("192.168.7.10")); !found {
		t.Error("new address not owned")
	}

	if _, found, err := s.Get(key("missing")); err != nil || found {
		t.Errorf("Get of missing = %v, %v", found, err)
	}
	bad := a
	bad.Extra = json.RawMessage(`{not json`)
	if err := s.Put(bad); err == nil {
		t.Error("Put accepted invalid extra JSON")
	}
	if err := s.Put(ipam.Attachment{Key: ipam.Key{Network: network, IfName: "eth0"}}); err == nil {
		t.Error("Put accepted an empty container ID")
	}
}

func TestCreatedDefaultsToClock(t *testing.T) {
	s, _ := openStore(t)
	s.Now = func() time.Time { return created.Add(time.Hour) }
	req := request("a", "frontend", frontend())
	req.Created = time.Time{}
	a, err := s.Allocate(req)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Created.Equal(created.Add(time.Hour)) {
		t.Errorf("Created = %v", a.Created)
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "zonenet")
	path := filepath.Join(dir, "zonenet.db")
	s, err := ipam.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestOpenCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zonenet.db")
	junk := []byte(strings.Repeat("this is not a database\n", 2000))
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ipam.Open(path, time.Second)
	if !errors.Is(err, ipam.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of junk = %v, want ErrCorrupt naming %s", err, path)
	}
}

func TestLockTimeout(t *testing.T) {
	s, path := openStore(t)
	start := time.Now()
	_, err := ipam.Open(path, 200*time.Millisecond)
	if !errors.Is(err, ipam.ErrLockTimeout) {
		t.Fatalf("second Open = %v, want ErrLockTimeout", err)
	}
	want := fmt.Sprintf("store %s is locked by another process for more than 200ms", path)
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 3*time.Second {
		t.Errorf("timed out after %v, want about 200ms", d)
	}
	// The first handle still works, and the lock is free once it closes.
	if _, err := s.Allocate(request("a", "frontend", frontend())); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := ipam.Open(path, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s2.Close()
	if _, found, err := s2.Get(key("a")); err != nil || !found {
		t.Errorf("Get after reopen = %v, %v", found, err)
	}
}

func TestAllocateRejectsBadRequest(t *testing.T) {
	s, _ := openStore(t)
	bad := pool("10.0.1.0/24", "10.0.1.1", "10.0.2.1", "10.0.2.9")
	if _, err := s.Allocate(request("a", "frontend", bad)); err == nil || !strings.Contains(err.Error(), "10.0.1.0/24") {
		t.Errorf("range outside the subnet: err = %v, want one naming the pool", err)
	}
	req := request("", "frontend", frontend())
	if _, err := s.Allocate(req); err == nil {
		t.Error("empty container ID accepted")
	}
	if l, err := s.List(network); err != nil || len(l) != 0 {
		t.Errorf("rejected requests stored %v, %v", l, err)
	}
}

func TestNetworks(t *testing.T) {
	s, _ := openStore(t)
	if n, err := s.Networks(); err != nil || len(n) != 0 {
		t.Fatalf("empty store: %v, %v", n, err)
	}
	for _, net := range []string{"zeta", "alpha"} {
		if err := s.Put(ipam.Attachment{Key: ipam.Key{Network: net, ContainerID: "c", IfName: "eth0"}, Mode: "none"}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Networks()
	if err != nil || len(n) != 2 || n[0] != "alpha" || n[1] != "zeta" {
		t.Fatalf("Networks = %v, %v", n, err)
	}
}
