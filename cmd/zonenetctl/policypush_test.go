package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/pki"
	"github.com/zonenet/zonenet/test/etcdtest"
)

// clusterConflist is the reference network in cluster mode, naming pol.
func clusterConflist(t *testing.T, dir, pol string) string {
	t.Helper()
	p := filepath.Join(dir, "net.conflist")
	key := ""
	if pol != "" {
		key = `"policy": "` + pol + `", `
	}
	doc := `{"cniVersion":"1.1.0","name":"prod","plugins":[{"type":"zonenet","store":"etcd",` + key +
		`"zones":[{"name":"frontend","subnet":"10.0.1.0/24"},{"name":"backend","subnet":"10.0.2.0/24"},` +
		`{"name":"mgmt","subnet":"10.0.3.0/24","subnet6":"fd00:0:3::/64"}]}]}`
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyPush against a real etcd: an invalid policy is refused with
// policy check's own messages and nothing is stored; a valid one is
// stored byte for byte, and pushing it again writes nothing.
func TestPolicyPush(t *testing.T) {
	srv := etcdtest.New(t)
	dir := t.TempDir()
	if err := srv.CA.Write(dir, false); err != nil {
		t.Fatal(err)
	}
	op, err := srv.CA.Issue(pki.CertSpec{Name: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Write(dir, "operator", false); err != nil {
		t.Fatal(err)
	}
	f := pki.DirFiles(dir, "operator")
	etcdArgs := []string{"--etcd", srv.Endpoints()[0], "--ca", f.CA, "--cert", f.Cert, "--key", f.Key}
	push := func(extra ...string) (int, string, string) {
		return runCLI(append(append([]string{"policy", "push"}, etcdArgs...), extra...)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tlsCfg, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	store, err := cluster.Open(ctx, cluster.Config{Endpoints: srv.Endpoints(), TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	cl := clusterConflist(t, dir, brokenPol)
	_, _, checkErr := runCLI("policy", "check", brokenPol, "--zones-from", cl)
	code, out, errOut := push("--conflist", cl)
	if code != exitFailed || out != "" || errOut != checkErr || !strings.Contains(errOut, "invalid: 8 errors") {
		t.Errorf("invalid policy: exit %d, stdout %q, stderr:\n%s\nwant %d and policy check's stderr:\n%s", code, out, errOut, exitFailed, checkErr)
	}
	if _, err := store.Policy(ctx, "prod"); !errors.Is(err, cluster.ErrNotFound) {
		t.Errorf("a refused policy reached etcd: %v", err)
	}

	code, out, errOut = push("--conflist", cl, "--policy", refPolicy)
	if code != exitOK || !strings.Contains(out, "valid: 3 zones, 5 rules") || !strings.Contains(out, "pushed the policy of network prod: revision ") {
		t.Fatalf("valid policy: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	want, err := os.ReadFile(refPolicy)
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Policy(ctx, "prod")
	if err != nil || string(got.Doc) != string(want) || !strings.Contains(out, " revision "+strconv.FormatInt(got.Revision, 10)) {
		t.Errorf("stored %q at revision %d (%v); printed %q", got.Doc, got.Revision, err, out)
	}
	code, out, _ = push("--conflist", cl, "--policy", refPolicy)
	if code != exitOK || !strings.Contains(out, "nothing written") {
		t.Errorf("same policy again: exit %d, stdout %q", code, out)
	}
	if again, _ := store.Policy(ctx, "prod"); again.Revision != got.Revision {
		t.Errorf("pushing the same bytes moved the revision %d -> %d", got.Revision, again.Revision)
	}

	// A conflist without a policy key: the file must be named, and the
	// operator is told the nodes will not take it.
	bare := clusterConflist(t, t.TempDir(), "")
	if code, _, errOut := push("--conflist", bare); code != exitUsage || !strings.Contains(errOut, `has no "policy" key`) {
		t.Errorf("no policy key, no --policy: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := push("--conflist", bare, "--policy", refPolicy); code != exitOK || !strings.Contains(errOut, "does not take the pushed policy") {
		t.Errorf("no policy key, --policy: exit %d, stderr %q", code, errOut)
	}
}

// TestPolicyPushFailsEarly: what is refused before etcd is contacted
// (the endpoint is closed: reaching it would time out, not fail fast).
func TestPolicyPushFailsEarly(t *testing.T) {
	dir := t.TempDir()
	cl := clusterConflist(t, dir, refPolicy)
	tls := []string{"--ca", "ca.crt", "--cert", "c.crt", "--key", "c.key"}
	with := func(args ...string) []string {
		return append(append([]string{"policy", "push", "--etcd", "https://127.0.0.1:1", "--timeout", "100ms"}, tls...), args...)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{with(), exitUsage, "--conflist is required"},
		{[]string{"policy", "push", "--conflist", cl}, exitUsage, "--etcd is required"},
		{[]string{"policy", "push", "--etcd", "https://127.0.0.1:1", "--conflist", cl}, exitUsage, "--ca, --cert and --key are required"},
		{with("--conflist", "/nonexistent.conflist"), exitFailed, "no such file"},
		{with("--conflist", refConflist), exitFailed, `store "local": only a network with "store": "etcd"`},
		{with("--conflist", cl, "--policy", "/nonexistent.yaml"), exitFailed, "no such file"},
		{with("--conflist", cl, "--policy", brokenPol), exitFailed, "invalid: 8 errors"},
	} {
		code, _, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
}
