//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/test/cnitest"
)

// dockerFilter is the filter table dockerd leaves on a host (FORWARD
// policy DROP, DOCKER-USER first, the isolation stages, docker0's
// accepts), for both families.
const dockerFilter = `*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`

// dockerNAT is its nat table (IPv4): published ports through DOCKER, the
// default bridge's masquerade.
const dockerNAT = `*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
`

// installDocker restores the dockerd-shaped tables into ns.
func installDocker(t *testing.T, ns *cnitest.NS) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []struct{ bin, name, body string }{
		{"iptables-restore", "v4", dockerFilter + dockerNAT},
		{"ip6tables-restore", "v6", dockerFilter},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
			t.Fatal(err)
		}
		ns.Run(t, f.bin, "--noflush", p)
	}
}

// dockerView are the lines of both families that are dockerd's: its
// chains and their rules, the jumps to them and FORWARD's policy.
func dockerView(t *testing.T, ns *cnitest.NS) []string {
	t.Helper()
	var out []string
	for _, v6 := range []bool{false, true} {
		fam := "v4 "
		if v6 {
			fam = "v6 "
		}
		table := ""
		for _, l := range ns.Iptables(t, v6) {
			switch {
			case strings.HasPrefix(l, "*"):
				table = l + " "
			case strings.HasPrefix(l, ":FORWARD "), strings.Contains(l, "DOCKER"), strings.Contains(l, "docker0"):
				out = append(out, fam+table+l)
			}
		}
	}
	return out
}

// TestCoexistsWithDocker: on a host where dockerd set FORWARD's policy to
// DROP and put its own chains first, the reference-shaped policy's
// matrix is exactly its truth table (nothing zonenet allows relies on
// FORWARD accepting), and after every container is gone, GC and a
// cleanup leave dockerd's policy, chains and rules as they were, line for
// line.
func TestCoexistsWithDocker(t *testing.T) {
	cnitest.RequireRoot(t)
	var tp *aclTopo
	var before, beforeAll []string
	tp = newACLTopo(t, aclTopoOptions{beforeAdd: func(e *env) {
		installDocker(t, e.host)
		before = dockerView(t, e.host)
		beforeAll = append(e.host.Iptables(t, false), e.host.Iptables(t, true)...)
	}})
	e := tp.e
	if !slices.Contains(before, "v4 *filter :FORWARD DROP") || !slices.Contains(before, "v6 *filter :FORWARD DROP") {
		t.Fatalf("dockerd's tables not in place: %q", before)
	}
	checkMatrix(t, "reference/forward-drop", tp.policy, tp.peers)
	checkMatrix(t, "reference/forward-drop/IPv6", tp.policy, tp.peers6)
	// dockerd restarting puts its jumps back at the top of FORWARD,
	// ahead of ours: the verdicts must not depend on the order.
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, ch := range []string{"DOCKER-ISOLATION-STAGE-1", "DOCKER-USER"} {
			e.host.Run(t, bin, "-D", "FORWARD", "-j", ch)
			e.host.Run(t, bin, "-I", "FORWARD", "1", "-j", ch)
		}
	}
	if f := e.host.RulesMatching(t, "-A FORWARD "); !strings.HasSuffix(f[0], "-j DOCKER-USER") {
		t.Fatalf("FORWARD does not start with DOCKER-USER after the restart: %q", f)
	}
	checkMatrix(t, "reference/forward-drop/docker-first", tp.policy, tp.peers)
	checkMatrix(t, "reference/forward-drop/docker-first/IPv6", tp.policy, tp.peers6)
	during := withoutZonenet(append(e.host.Iptables(t, false), e.host.Iptables(t, true)...))
	if !slices.Equal(during, beforeAll) {
		t.Errorf("with zonenet installed, the foreign rules differ from before:\n%s", lineDiff(beforeAll, during))
	}

	tp.delAll()
	e.gc()
	if left := zonenetLines(t, e.host); len(left) > 0 {
		t.Errorf("left after DEL and GC:\n%s", strings.Join(left, "\n"))
	}
	if after := dockerView(t, e.host); !slices.Equal(after, before) {
		t.Errorf("after DEL and GC, dockerd's rules differ:\n%s", lineDiff(before, after))
	}
	code, out, errOut := ctl(t, e, e.host, "cleanup")
	if code != 0 {
		t.Fatalf("cleanup after GC: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("cleanup after GC: %s", strings.TrimSpace(out))
	if after := dockerView(t, e.host); !slices.Equal(after, before) {
		t.Errorf("after cleanup, dockerd's rules differ:\n%s", lineDiff(before, after))
	}
	if all := append(e.host.Iptables(t, false), e.host.Iptables(t, true)...); !slices.Equal(all, beforeAll) {
		t.Errorf("after cleanup, the tables differ from before zonenet:\n%s", lineDiff(beforeAll, all))
	}
}

// lineDiff shows two line lists side by side, marking what is only in
// one of them.
func lineDiff(want, got []string) string {
	return cnitest.State{Lines: want}.Diff(cnitest.State{Lines: got})
}
