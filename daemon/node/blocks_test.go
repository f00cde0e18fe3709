package node

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/cluster"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/ipam"
)

func TestSyncLocalBlocks(t *testing.T) {
	c, err := conf.FromConfList([]byte(`{"cniVersion":"1.1.0","name":"prod","plugins":[{"type":"zonenet","store":"etcd",
		"zones":[{"name":"fe","subnet":"10.0.1.0/24"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cfg: Config{NodeName: "me"}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		nets: []network{{path: "/x", conf: c}}, dataDir: t.TempDir()}
	pfx := netip.MustParsePrefix
	mine, theirs, free, adopt := pfx("10.0.1.0/26"), pfx("10.0.1.64/26"), pfx("10.0.1.128/26"), pfx("10.0.1.192/26")
	withStore := func(fn func(*ipam.Store)) {
		st, err := ipam.Open(ipam.PathIn(d.dataDir), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		fn(st)
	}
	local := func() []netip.Prefix {
		var out []netip.Prefix
		withStore(func(st *ipam.Store) {
			var err error
			if out, err = st.Blocks("prod", "fe"); err != nil {
				t.Fatal(err)
			}
		})
		return out
	}
	withStore(func(st *ipam.Store) {
		for _, b := range []netip.Prefix{mine, theirs, free} {
			if err := st.AddBlock("prod", "fe", b); err != nil {
				t.Fatal(err)
			}
		}
	})
	v := newView()
	for _, b := range []cluster.Block{
		{Network: "prod", Zone: "fe", Prefix: mine, Node: "me"},
		{Network: "prod", Zone: "fe", Prefix: theirs, Node: "other"},
		{Network: "prod", Zone: "fe", Prefix: adopt, Node: "me"},
	} {
		v.apply(cluster.Event{Type: cluster.EventPut, Block: &b})
	}

	// Later runs only report what is not this node's.
	problems, err := d.syncLocalBlocks(v, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 2 || !strings.Contains(strings.Join(problems, "\n"), "gives it to node other") {
		t.Errorf("problems %q", problems)
	}
	if got := local(); !slices.Equal(got, []netip.Prefix{mine, theirs, free, adopt}) {
		t.Errorf("after a reporting run: %v", got)
	}
	// The first run forgets the blocks without leases that are not ours.
	if problems, err = d.syncLocalBlocks(v, true); err != nil || len(problems) != 0 {
		t.Fatalf("first run: %q, %v", problems, err)
	}
	if got := local(); !slices.Equal(got, []netip.Prefix{mine, adopt}) {
		t.Errorf("after the first run: %v, want %v", got, []netip.Prefix{mine, adopt})
	}
}
