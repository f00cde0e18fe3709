package plugin

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/acl/acltest"
)

// The cleanup recognises exactly the marks ensureBridge writes.
func TestCleanupKnowsBridgeMarks(t *testing.T) {
	for _, tt := range []struct {
		alias          string
		made, adopted  bool
		describeBridge string
	}{
		{bridgeAlias("net", "zone"), true, false, "ready"},
		{newBridgeAlias("net", "zone"), true, false, "half set up"},
		{adoptedAlias("net", "zone"), false, true, "adopted"},
		{"zonenetx:net:zone", false, false, "foreign, similar alias"},
		{"", false, false, "no alias"},
	} {
		b := HostBridge{Alias: tt.alias}
		if b.made() != tt.made || b.adopted() != tt.adopted {
			t.Errorf("%s bridge %q: made %v adopted %v, want %v %v", tt.describeBridge, tt.alias, b.made(), b.adopted(), tt.made, tt.adopted)
		}
	}
}

type fakeLinks struct {
	bridges []HostBridge
	changes int
}

func (f *fakeLinks) Bridges() ([]HostBridge, error) { return slices.Clone(f.bridges), nil }

func (f *fakeLinks) DeleteBridge(name string) error {
	f.changes++
	f.bridges = slices.DeleteFunc(f.bridges, func(b HostBridge) bool { return b.Name == name })
	return nil
}

func (f *fakeLinks) ClearAlias(name string) error {
	f.changes++
	for i := range f.bridges {
		if f.bridges[i].Name == name {
			f.bridges[i].Alias = ""
		}
	}
	return nil
}

func (f *fakeLinks) names() []string {
	var out []string
	for _, b := range f.bridges {
		out = append(out, b.Name+"="+b.Alias)
	}
	return out
}

type fakeSets struct{ names []string }

func (f *fakeSets) ListSets() ([]string, error) { return slices.Clone(f.names), nil }

// RestoreSets takes the "destroy NAME" lines cleanup sends.
func (f *fakeSets) RestoreSets(batch []byte) error {
	for _, l := range strings.Split(strings.TrimSpace(string(batch)), "\n") {
		name, _ := strings.CutPrefix(l, "destroy ")
		f.names = slices.DeleteFunc(f.names, func(n string) bool { return n == name })
	}
	return nil
}

// cleanupHost is a host with zonenet's chains, sets and bridges of every
// kind, and foreign ones.
func cleanupHost(t *testing.T, ports ...string) (*acltest.Fake, *fakeSets, *fakeLinks) {
	t.Helper()
	ipt := &acltest.Fake{}
	body := ":ZONENET-FORWARD - [0:0]\n:USER - [0:0]\n-A FORWARD -j ZONENET-FORWARD\n-A FORWARD -j USER\n-A ZONENET-FORWARD -j ACCEPT\n"
	if err := ipt.Restore(acl.IPv4, "filter", []byte(body)); err != nil {
		t.Fatal(err)
	}
	links := &fakeLinks{bridges: []HostBridge{
		{Name: "zbfront", Alias: bridgeAlias("n", "frontend"), Ports: ports},
		{Name: "zbhalf", Alias: newBridgeAlias("n", "backend")},
		{Name: "useradopt", Alias: adoptedAlias("n", "mgmt"), Ports: []string{"eth-user"}},
		{Name: "userbr", Alias: "", Ports: []string{"zn0123456789ab"}},
		{Name: "lookalike", Alias: "zonenetx:n:z"},
	}}
	return ipt, &fakeSets{names: []string{"user-set", "zn-x"}}, links
}

func TestCleanupRefusesWhileAttached(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(*fakeLinks)
	}{
		{"port on a made bridge", func(l *fakeLinks) { l.bridges[0].Ports = []string{"zn0123456789ab"} }},
		{"container on an adopted bridge", func(l *fakeLinks) { l.bridges[2].Ports = append(l.bridges[2].Ports, "znaaaaaaaaaaaa") }},
	} {
		ipt, sets, links := cleanupHost(t)
		tt.mutate(links)
		before, beforeSets := links.names(), slices.Clone(sets.names)
		var lines []string
		n, err := Cleanup(CleanupOptions{IPT: ipt, IPSets: sets, Links: links, Report: func(l string) { lines = append(lines, l) }})
		var busy *BusyError
		if !errors.As(err, &busy) || n != 0 || len(lines) != 0 {
			t.Errorf("%s: n=%d err=%v lines=%q, want a BusyError and nothing done", tt.name, n, err, lines)
		}
		if err != nil && !strings.Contains(err.Error(), "--force") {
			t.Errorf("%s: error %q does not say how to go on", tt.name, err)
		}
		if ipt.Restores != 1 || links.changes != 0 || !slices.Equal(links.names(), before) || !slices.Equal(sets.names, beforeSets) {
			t.Errorf("%s: refused cleanup changed something", tt.name)
		}
	}
}

func TestCleanupDryRunThenRun(t *testing.T) {
	ipt, sets, links := cleanupHost(t)
	before := links.names()
	var dry []string
	n, err := Cleanup(CleanupOptions{IPT: ipt, IPSets: sets, Links: links, DryRun: true, Report: func(l string) { dry = append(dry, l) }})
	if err != nil || n != len(dry) || ipt.Restores != 1 || links.changes != 0 || len(sets.names) != 2 {
		t.Fatalf("dry run: n=%d err=%v restores=%d link changes=%d sets=%q", n, err, ipt.Restores, links.changes, sets.names)
	}
	var real []string
	n, err = Cleanup(CleanupOptions{IPT: ipt, IPSets: sets, Links: links, Report: func(l string) { real = append(real, l) }})
	if err != nil || n != len(real) {
		t.Fatalf("cleanup: n=%d err=%v", n, err)
	}
	for i := range dry {
		if strings.TrimPrefix(dry[i], "would remove ") != strings.TrimPrefix(real[i], "removed ") {
			t.Errorf("dry run said %q, the run did %q", dry[i], real[i])
		}
	}
	want := []string{"useradopt=", "userbr=", "lookalike=zonenetx:n:z"}
	if got := links.names(); !slices.Equal(got, want) {
		t.Errorf("bridges %q, want %q (was %q)", got, want, before)
	}
	if !slices.Equal(sets.names, []string{"user-set"}) {
		t.Errorf("sets %q", sets.names)
	}
	if chains := ipt.Chains(acl.IPv4, "filter"); !slices.Equal(chains, []string{"USER"}) {
		t.Errorf("chains %q", chains)
	}
	n, err = Cleanup(CleanupOptions{IPT: ipt, IPSets: sets, Links: links})
	if n != 0 || err != nil {
		t.Errorf("second cleanup: n=%d err=%v, want nothing to do", n, err)
	}
}

func TestCleanupForce(t *testing.T) {
	ipt, sets, links := cleanupHost(t, "zn0123456789ab")
	var lines []string
	_, err := Cleanup(CleanupOptions{IPT: ipt, IPSets: sets, Links: links, Force: true, Report: func(l string) { lines = append(lines, l) }})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(links.bridges, func(b HostBridge) bool { return b.Name == "zbfront" }) {
		t.Error("--force kept the busy bridge")
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "detaching zn0123456789ab") }) {
		t.Errorf("report does not say which ports were detached: %q", lines)
	}
}
