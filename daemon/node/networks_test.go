package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/conf"
)

func TestLoadNetworks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prod := write("prod.conflist", `{"cniVersion":"1.1.0","name":"prod","plugins":[{"type":"zonenet","store":"etcd","mtu":1450,
		"zones":[{"name":"frontend","subnet":"10.0.1.0/24"},{"name":"backend","subnet":"10.0.2.0/24"}]}]}`)
	lab := write("lab.conf", `{"cniVersion":"1.1.0","name":"lab","type":"zonenet","store":"etcd","daemonSocket":"/run/other.sock",
		"zones":[{"name":"x","subnet":"10.9.0.0/24"}]}`)
	local := write("local.conflist", `{"cniVersion":"1.1.0","name":"one","plugins":[{"type":"zonenet","zones":[{"name":"a","subnet":"10.8.0.0/24"}]}]}`)
	overlap := write("overlap.conflist", `{"cniVersion":"1.1.0","name":"dev","plugins":[{"type":"zonenet","store":"etcd",
		"zones":[{"name":"a","subnet":"10.0.2.128/25"}]}]}`)
	none := write("none.conflist", `{"cniVersion":"1.1.0","name":"off","plugins":[{"type":"zonenet","store":"etcd","mode":"none"}]}`)

	nets, err := loadNetworks([]string{prod, lab})
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 2 || nets[0].conf.Name != "prod" || nets[0].conf.BlockSize != conf.DefaultBlockSize {
		t.Fatalf("networks %+v", nets)
	}
	if _, err := shared(nets, "daemonSocket", func(c *conf.NetConf) string { return c.DaemonSocket }); err == nil ||
		!strings.Contains(err.Error(), "/run/other.sock") {
		t.Errorf("different sockets: %v", err)
	}
	if v, err := shared(nets, "dataDir", func(c *conf.NetConf) string { return c.DataDir }); err != nil || v != conf.DefaultDataDir {
		t.Errorf("shared dataDir = %q, %v", v, err)
	}
	for _, tc := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"local store", []string{local}, `store "local"`},
		{"overlap", []string{prod, overlap}, "overlaps 10.0.2.0/24 of network prod"},
		{"twice", []string{prod, prod}, "network prod is also in"},
		{"no addresses", []string{none}, "mode none"},
		{"missing", []string{filepath.Join(dir, "nope")}, "no such file"},
	} {
		if _, err := loadNetworks(tc.paths); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

func TestMTUAdvice(t *testing.T) {
	nets := []network{
		{path: "/a", conf: &conf.NetConf{Name: "a", MTU: 0}},
		{path: "/b", conf: &conf.NetConf{Name: "b", MTU: 1450}},
		{path: "/c", conf: &conf.NetConf{Name: "c", MTU: 1500}},
	}
	got := mtuAdvice(nets, 1450)
	// No mtu: the plugin takes the overlay's; only c is too large.
	if len(got) != 1 || !strings.Contains(got[0], "network c") || !strings.Contains(got[0], `"mtu" 1500`) {
		t.Errorf("advice %q", got)
	}
}
