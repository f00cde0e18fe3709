package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/ipam"
	"github.com/zonenet/zonenet/netns"
)

// pluginBinary builds the zonenet plugin once per test binary, or takes
// the one named by ZONENET_PLUGIN.
var pluginBinary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("ZONENET_PLUGIN"); p != "" {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "zonenet-plugin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "zonenet")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/zonenet/zonenet/cmd/zonenet")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the plugin: %v\n%s", err, b)
	}
	return out, nil
})

func requireRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	p, err := pluginBinary()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDemoEndToEnd builds the reference topology through the real plugin,
// serially and concurrently, with the reference policy and with none, and
// checks addresses, that every port's matrix is the policy's truth table
// cell by cell, and that teardown leaves nothing behind.
func TestDemoEndToEnd(t *testing.T) {
	plugin := requireRoot(t)
	for _, tc := range []struct {
		name     string
		policy   []byte
		parallel bool
	}{
		{"reference-serial", ReferencePolicy, false},
		{"reference-parallel", ReferencePolicy, true},
		{"none-parallel", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runID := fmt.Sprintf("%d-%s", os.Getpid(), tc.name[:3]+tc.name[len(tc.name)-3:])
			d, err := New(Config{
				Plugin:   plugin,
				Prefix:   "zntest",
				RunID:    runID,
				Parallel: tc.parallel,
				Policy:   tc.policy,
				Log:      testLog{t},
			})
			if err != nil {
				t.Fatal(err)
			}
			torn := false
			t.Cleanup(func() {
				if !torn {
					_ = d.Teardown()
				}
			})

			start := time.Now()
			if err := d.Setup(context.Background()); err != nil {
				t.Fatalf("Setup: %v", err)
			}
			for _, c := range d.Containers {
				zone, _ := d.Topology().Zone(c.Zone)
				if !zone.Subnet.Contains(c.IP.Addr()) || c.IP.Bits() != zone.Subnet.Bits() {
					t.Errorf("%s got %v, want an address of %s", c.Name, c.IP, zone.Subnet)
				}
				if c.MAC == "" || c.HostVeth == "" {
					t.Errorf("%s: MAC %q, host veth %q; want both", c.Name, c.MAC, c.HostVeth)
				}
				if c.ContainerSpec.IP.IsValid() && c.IP.Addr() != c.ContainerSpec.IP {
					t.Errorf("%s got %v, want the static address %v", c.Name, c.IP, c.ContainerSpec.IP)
				}
			}
			if (tc.policy == nil) != (d.Policy() == nil) {
				t.Fatalf("policy given: %v, parsed: %v", tc.policy != nil, d.Policy() != nil)
			}
			assertUniqueIPs(t, d.Containers)

			ms := d.Probe(context.Background())
			if len(ms) != len(DefaultPorts) {
				t.Fatalf("%d matrices, want one per port %v", len(ms), DefaultPorts)
			}
			for i, m := range ms {
				port := DefaultPorts[i]
				if len(m.Rows) != len(d.Containers) || len(m.Cols) != len(d.Containers)+1 {
					t.Errorf("port %d: matrix is %dx%d, want %dx%d", port, len(m.Rows), len(m.Cols), len(d.Containers), len(d.Containers)+1)
				}
				var b strings.Builder
				_ = WriteMatrix(&b, m, nil)
				t.Logf("port %d:\n%s", port, b.String())
				want := Expected(m, PolicyTable(d.Policy(), port))
				for r, row := range m.Rows {
					for c, col := range m.Cols {
						if g, w := m.Cells[r][c].Outcome, want.Cells[r][c].Outcome; g != w {
							t.Errorf("port %d: %s -> %s: got %s, the policy says %s (%s)", port, row.Name, col.Name, g, w, m.Cells[r][c].Err)
						}
					}
				}
				if tc.policy == nil {
					for _, x := range Diff(m, Expected(m, AllowAll)) {
						t.Errorf("port %d, no policy: %s", port, x)
					}
				}
			}

			var vethNames []string
			for _, c := range d.Containers {
				vethNames = append(vethNames, c.HostVeth)
			}
			err = d.Teardown()
			torn = true
			if err != nil {
				t.Errorf("Teardown: %v", err)
			}
			if err := d.Teardown(); err != nil {
				t.Errorf("second Teardown: %v", err)
			}
			t.Logf("whole run took %s", time.Since(start).Round(time.Millisecond))
			assertGone(t, d, vethNames)
		})
	}
}

func assertUniqueIPs(t *testing.T, cs []*Container) {
	t.Helper()
	seen := map[string]string{}
	for _, c := range cs {
		ip := c.IP.Addr().String()
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s both got %s", other, c.Name, ip)
		}
		seen[ip] = c.Name
	}
}

// assertGone checks that no namespace of the demo is listed any more and
// that none of its interfaces appeared in the test's own namespace.
func assertGone(t *testing.T, d *Demo, veths []string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	suffix := "-" + strings.TrimPrefix(d.HostNetns(), "zntest-host-")
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(name, "zntest-") && strings.HasSuffix(name, suffix) {
			t.Errorf("namespace %s survived teardown", name)
		}
	}
	for _, n := range d.Namespaces() {
		if _, err := os.Stat(netns.Path(n)); err == nil {
			t.Errorf("%s still exists", netns.Path(n))
		}
	}
	names := append([]string(nil), veths...)
	for _, z := range d.Topology().Zones {
		if z.Bridge != "" {
			names = append(names, z.Bridge)
		}
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		if _, err := netlink.LinkByName(n); err == nil {
			t.Errorf("link %s exists in the test's own namespace", n)
		}
	}
	if _, err := os.Stat(d.DataDir()); err == nil {
		t.Errorf("data dir %s survived teardown", d.DataDir())
	}
}

// TestRunPrintsAndCleansUp runs the whole command flow and checks what an
// operator sees.
func TestRunPrintsAndCleansUp(t *testing.T) {
	plugin := requireRoot(t)
	var out strings.Builder
	err := Run(context.Background(), RunOptions{
		Config: Config{Plugin: plugin, Prefix: "zntest", RunID: fmt.Sprintf("%d-run", os.Getpid()), Policy: ReferencePolicy},
		Out:    &out,
	})
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, s := range []string{"CONTAINER", "10.0.2.", "10.0.3.10/24", "FROM \\ TO", GatewayName, "Port 8080, observed",
		"Port 3306, expected", "0 of 98 cells differ", "detached 7 containers"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

// TestRunInterrupted cancels the run during setup: Run must tear down and
// report the interruption.
func TestRunInterrupted(t *testing.T) {
	plugin := requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	runID := fmt.Sprintf("%d-int", os.Getpid())
	log := &cancelAfter{n: 3, cancel: cancel}
	err := Run(ctx, RunOptions{Config: Config{Plugin: plugin, Prefix: "zntest", RunID: runID, Log: log}})
	if err == nil || !strings.Contains(err.Error(), ErrInterrupted.Error()) {
		t.Fatalf("Run = %v, want interrupted", err)
	}
	if strings.Contains(err.Error(), "teardown") {
		t.Errorf("teardown after interrupt failed: %v", err)
	}
	d, _ := New(Config{Plugin: plugin, Prefix: "zntest", RunID: runID})
	assertGone(t, d, nil)
}

// cancelAfter cancels after n progress lines: a signal arriving midway.
type cancelAfter struct {
	mu     sync.Mutex
	n      int
	cancel func()
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return len(p), nil
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestTeardownReportsLeftovers plants what a faulty DEL would leave behind,
// a veth in the host namespace and a record in the store, and checks that
// Teardown reports both and still removes everything.
func TestTeardownReportsLeftovers(t *testing.T) {
	requireRoot(t)
	empty := Reference()
	empty.Containers = nil
	d, err := New(Config{Plugin: "/bin/false", Topology: &empty, Prefix: "zntest", RunID: fmt.Sprintf("%d-left", os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Teardown() })
	if err := d.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = netns.Do(netns.Path(d.HostNetns()), func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "zntleft0"}, PeerName: "zntleft1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ipam.Open(filepath.Join(d.DataDir(), "zonenet.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Put(ipam.Attachment{Key: ipam.Key{Network: empty.Network, ContainerID: "stale", IfName: "eth0"}})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	err = d.Teardown()
	if err == nil || !strings.Contains(err.Error(), "zntleft0") || !strings.Contains(err.Error(), "stale") {
		t.Errorf("Teardown = %v; want it to report the veth and the store record", err)
	}
	assertGone(t, d, []string{"zntleft0", "zntleft1"})
}
