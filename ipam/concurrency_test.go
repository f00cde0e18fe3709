package ipam_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/zonenet/zonenet/ipam"
)

// The helper process environment: the store path, a container ID prefix and
// how many allocations to make.
const (
	helperPath   = "ZONENET_IPAM_HELPER_STORE"
	helperPrefix = "ZONENET_IPAM_HELPER_PREFIX"
	helperCount  = "ZONENET_IPAM_HELPER_COUNT"
)

// allocateLikeThePlugin does what one plugin exec does: open, allocate,
// close.
func allocateLikeThePlugin(path, cid string) error {
	s, err := ipam.Open(path, 30*time.Second)
	if err != nil {
		return err
	}
	_, err = s.Allocate(request(cid, "frontend", frontend()))
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	// The rest of an exec (netlink, iptables) runs without the store; it
	// also gives a waiting peer, which polls the lock, a chance to take it.
	time.Sleep(2 * time.Millisecond)
	return err
}

// TestAllocateHelperProcess is not a test: TestConcurrentProcesses runs the
// test binary again with this test selected to get a second OS process.
func TestAllocateHelperProcess(t *testing.T) {
	path := os.Getenv(helperPath)
	if path == "" {
		t.Skip("helper process of TestConcurrentProcesses")
	}
	n, err := strconv.Atoi(os.Getenv(helperCount))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := allocateLikeThePlugin(path, fmt.Sprintf("%s-%03d", os.Getenv(helperPrefix), i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentProcesses(t *testing.T) {
	if os.Getenv(helperPath) != "" {
		t.Skip("inside a helper process")
	}
	path := filepath.Join(t.TempDir(), "zonenet.db")
	const procs, each = 2, 100
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAllocateHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(),
			helperPath+"="+path,
			helperPrefix+"="+fmt.Sprint("proc", p),
			helperCount+"="+strconv.Itoa(each))
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
	}
	checkNoDuplicates(t, path, procs*each)
	logInterleaving(t, path)
}

// logInterleaving reports how often consecutive addresses went to different
// processes, to show the run did contend.
func logInterleaving(t *testing.T, path string) {
	s, err := ipam.Open(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.List(network)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(l, func(a, b ipam.Attachment) int { return a.IPs[0].Addr().Compare(b.IPs[0].Addr()) })
	switches := 0
	for i := 1; i < len(l); i++ {
		if l[i].ContainerID[:5] != l[i-1].ContainerID[:5] {
			switches++
		}
	}
	t.Logf("the lease order switched between processes %d times", switches)
}

func TestConcurrentGoroutines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zonenet.db")
	// Each goroutine opens its own Store, like separate execs: flock locks
	// belong to the open file description, so they exclude each other
	// within one process too.
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := allocateLikeThePlugin(path, fmt.Sprintf("g%d-%03d", w, i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkNoDuplicates(t, path, workers*each)
}

func checkNoDuplicates(t *testing.T, path string, want int) {
	t.Helper()
	s, err := ipam.Open(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.List(network)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != want {
		t.Errorf("%d attachments, want %d", len(l), want)
	}
	seen := make(map[string]string)
	for _, a := range l {
		if len(a.IPs) != 1 {
			t.Fatalf("%s has IPs %v", a.ContainerID, a.IPs)
		}
		ip := a.IPs[0].Addr()
		if prev, dup := seen[ip.String()]; dup {
			t.Errorf("%s handed out to %s and %s", ip, prev, a.ContainerID)
		}
		seen[ip.String()] = a.ContainerID
		if k, found, err := s.Owner(network, ip); err != nil || !found || k != a.Key {
			t.Errorf("Owner(%s) = %v, %v, %v; want %v", ip, k, found, err, a.Key)
		}
	}
	us, err := s.Usage(network, ipam.Zone{Name: "frontend", Pools: []ipam.Pool{frontend()}})
	if err != nil {
		t.Fatal(err)
	}
	if us[0].Used != uint64(want) {
		t.Errorf("Usage used = %d, want %d", us[0].Used, want)
	}
}
