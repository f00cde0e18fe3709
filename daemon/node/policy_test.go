package node

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/conf"
)

const (
	polAllow8080 = "rules:\n  - {name: api, source: frontend, destination: {zone: backend, ports: [8080]}, protocol: tcp}\n"
	polAllow9090 = "rules:\n  - {name: api, source: frontend, destination: {zone: backend, ports: [9090]}, protocol: tcp}\n"
	polBadZone   = "rules:\n  - {name: api, source: frontnd, destination: backend, protocol: tcp}\n"
)

// policyRig is a policy server over two networks (prod with a policy key,
// lab without) whose installs are recorded instead of reaching iptables.
type policyRig struct {
	t        *testing.T
	p        *policyServer
	log      *bytes.Buffer
	file     string   // prod's policy file
	installs []string // the file's content at each install
	fail     error    // the next install's error
}

func newPolicyRig(t *testing.T) *policyRig {
	dir := t.TempDir()
	r := &policyRig{t: t, log: &bytes.Buffer{}, file: filepath.Join(dir, "prod-policy.yaml")}
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prod := write("prod.conflist", `{"cniVersion":"1.1.0","name":"prod","plugins":[{"type":"zonenet","store":"etcd","policy":"`+r.file+`",
		"zones":[{"name":"frontend","subnet":"10.0.1.0/24"},{"name":"backend","subnet":"10.0.2.0/24"}]}]}`)
	lab := write("lab.conflist", `{"cniVersion":"1.1.0","name":"lab","plugins":[{"type":"zonenet","store":"etcd",
		"zones":[{"name":"frontend","subnet":"10.9.1.0/24"},{"name":"backend","subnet":"10.9.2.0/24"}]}]}`)
	nets, err := loadNetworks([]string{prod, lab})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(r.log, nil))
	r.p = newPolicyServer(nets, newState(log), log)
	r.p.install = func(conflist []byte) (*conf.Policy, int, error) {
		c, err := conf.FromConfList(conflist)
		if err != nil || c.Policy != r.file {
			t.Fatalf("install of %s (%v), want the conflist of prod", conflist, err)
		}
		if err := r.fail; err != nil {
			r.fail = nil
			return nil, 0, err
		}
		b, _ := os.ReadFile(r.file)
		r.installs = append(r.installs, string(b))
		pol, _, err := conf.ParsePolicy(b, c.Zones)
		return pol, 2, err
	}
	return r
}

func (r *policyRig) put(network, doc string, rev int64) {
	r.p.offer(cluster.Event{Type: cluster.EventPut, Revision: rev, Policy: &cluster.Policy{Network: network, Doc: []byte(doc), Revision: rev}})
	r.p.step(false)
}

func (r *policyRig) fileIs(want string) {
	r.t.Helper()
	b, err := os.ReadFile(r.file)
	if err != nil || string(b) != want {
		r.t.Fatalf("policy file %q (%v), want %q", b, err, want)
	}
	if st, _ := os.Stat(r.file); st.Mode().Perm() != 0o644 {
		r.t.Errorf("policy file mode %v, want 0644", st.Mode().Perm())
	}
}

func (r *policyRig) installed(n int) {
	r.t.Helper()
	if len(r.installs) != n {
		r.t.Fatalf("%d installs, want %d; log:\n%s", len(r.installs), n, r.log)
	}
}

func (r *policyRig) metrics() string {
	var b strings.Builder
	r.p.st.writeMetrics(&b, "n", "v")
	return b.String()
}

func TestPolicyServer(t *testing.T) {
	r := newPolicyRig(t)
	// Before the first complete listing nothing happens: the offer waits.
	r.put("prod", polAllow8080, 5)
	if _, err := os.Stat(r.file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("written before the listing: %v", err)
	}
	r.p.listed()
	r.p.step(false)
	r.fileIs(polAllow8080)
	r.installed(1)
	if r.installs[0] != polAllow8080 || !strings.Contains(r.log.String(), "policy installed") {
		t.Errorf("install saw %q; log:\n%s", r.installs[0], r.log)
	}
	if m := r.metrics(); !strings.Contains(m, `zonenetd_policy_revision{network="prod"} 5`) || !strings.Contains(m, "zonenetd_policy_installs_total 1") {
		t.Errorf("metrics:\n%s", m)
	}

	// The same bytes at a new revision: nothing written, nothing installed.
	st0, _ := os.Stat(r.file)
	r.put("prod", polAllow8080, 7)
	r.installed(1)
	if st, _ := os.Stat(r.file); !os.SameFile(st0, st) {
		t.Errorf("the file was replaced for the same bytes")
	}
	if !strings.Contains(r.metrics(), `zonenetd_policy_revision{network="prod"} 7`) {
		t.Errorf("revision not moved to 7:\n%s", r.metrics())
	}

	// A new document: written, then installed.
	r.put("prod", polAllow9090, 9)
	r.fileIs(polAllow9090)
	r.installed(2)

	// Invalid for the zones: refused once, however often it is seen.
	r.put("prod", polBadZone, 11)
	r.p.step(true)
	r.p.step(true)
	r.fileIs(polAllow9090)
	r.installed(2)
	if n := strings.Count(r.log.String(), "refused the policy in etcd"); n != 1 || !strings.Contains(r.log.String(), `source \"frontnd\": is not a zone`) {
		t.Errorf("refusal logged %d times:\n%s", n, r.log)
	}
	if m := r.metrics(); !strings.Contains(m, `zonenetd_policy_revision{network="prod"} 9`) || !strings.Contains(m, "zonenetd_policy_refused_total 1") {
		t.Errorf("metrics after a refusal:\n%s", m)
	}

	// Deleted in etcd: the node keeps what it runs.
	r.p.offer(cluster.Event{Type: cluster.EventDelete, Revision: 12, Policy: &cluster.Policy{Network: "prod", Revision: 11}})
	r.p.step(false)
	r.p.step(true)
	r.fileIs(polAllow9090)
	r.installed(2)
	if !strings.Contains(r.log.String(), "deleted from etcd: this node keeps the one it runs") {
		t.Errorf("deletion not logged:\n%s", r.log)
	}

	// A network whose conflist has no policy key takes nothing.
	r.put("lab", polAllow8080, 13)
	r.installed(2)
	if !strings.Contains(r.log.String(), `network=lab revision=13 why="the conflist has no \"policy\" key`) {
		t.Errorf("lab's refusal not logged:\n%s", r.log)
	}
}

// TestPolicyServerRepairs: a failed install is retried at the next
// resync, and a file changed by hand gets the cluster's document back.
func TestPolicyServerRepairs(t *testing.T) {
	r := newPolicyRig(t)
	r.p.listed()
	r.fail = errors.New("iptables-restore: exit status 4")
	r.put("prod", polAllow8080, 3)
	r.fileIs(polAllow8080)
	r.installed(0)
	if ok, why := r.p.st.healthy(); ok || !strings.Contains(strings.Join(why, "\n"), "policy of network prod: install failed: iptables-restore") {
		t.Errorf("health after a failed install: %v %q", ok, why)
	}
	r.p.step(true)
	r.installed(1)
	if _, why := r.p.st.healthy(); strings.Contains(strings.Join(why, "\n"), "policy") {
		t.Errorf("health after the retry: %q", why)
	}
	r.p.step(true)
	r.installed(1)

	if err := os.WriteFile(r.file, []byte(polAllow9090), 0o644); err != nil {
		t.Fatal(err)
	}
	r.p.step(true)
	r.fileIs(polAllow8080)
	r.installed(2)
	if !strings.Contains(r.log.String(), "the policy file was changed on this node") {
		t.Errorf("repair not logged:\n%s", r.log)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(r.file), ".*tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
