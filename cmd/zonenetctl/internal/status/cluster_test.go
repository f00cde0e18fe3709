package status

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/cluster"
)

func TestWriteCluster(t *testing.T) {
	v := ClusterView{
		Revision: 42,
		Nodes: []cluster.Node{
			{Name: "eu-1", Underlay: netip.MustParseAddr("192.0.2.1"), VTEPMAC: "02:00:00:00:00:01", Registered: now.Add(-3 * time.Minute)},
			{Name: "us-1", Underlay: netip.MustParseAddr("192.0.2.2"), VTEPMAC: "02:00:00:00:00:02", Registered: now.Add(-5 * time.Second)},
		},
		Blocks: []cluster.Block{
			{Network: "prod", Zone: "backend", Prefix: netip.MustParsePrefix("10.0.2.0/26"), Node: "eu-1"},
			{Network: "prod", Zone: "frontend", Prefix: netip.MustParsePrefix("10.0.1.0/26"), Node: "eu-1"},
			{Network: "prod", Zone: "frontend", Prefix: netip.MustParsePrefix("10.0.1.64/26"), Node: "sg-1"},
		},
	}
	var b strings.Builder
	if err := WriteCluster(&b, v, now); err != nil {
		t.Fatal(err)
	}
	want := `NODES: 2 up, 1 down (revision 42)
NODE  STATE                 UNDERLAY   VTEP MAC           REGISTERED  BLOCKS
eu-1  up                    192.0.2.1  02:00:00:00:00:01  3m          prod/backend 10.0.2.0/26, prod/frontend 10.0.1.0/26
us-1  up                    192.0.2.2  02:00:00:00:00:02  5s          -
sg-1  down (lease expired)  -          -                  -           prod/frontend 10.0.1.64/26

BLOCKS PER ZONE
NETWORK  ZONE      BLOCK         NODE  NODE STATE
prod     backend   10.0.2.0/26   eu-1  up
prod     frontend  10.0.1.0/26   eu-1  up
prod     frontend  10.0.1.64/26  sg-1  down
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteUsage(t *testing.T) {
	var b strings.Builder
	err := writeUsage(&b, []cluster.Usage{
		{Node: "eu-1", Containers: map[string]int{"prod/frontend": 2, "prod/backend": 1}},
		{Node: "us-1", Containers: map[string]int{"prod/frontend": 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `
CONTAINERS PER ZONE
ZONE           eu-1  us-1  TOTAL
prod/backend   1     0     1
prod/frontend  2     3     5
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
