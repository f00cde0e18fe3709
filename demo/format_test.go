package demo

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestWriteContainers(t *testing.T) {
	cs := []*Container{
		{
			ContainerSpec: ContainerSpec{Name: "web-1", Zone: "frontend"},
			Netns:         "zndemo-web-1-7",
			IP:            netip.MustParsePrefix("10.0.1.2/24"),
			MAC:           "aa:bb:cc:dd:ee:ff",
			HostVeth:      "zn0123456789ab",
		},
		{
			ContainerSpec: ContainerSpec{Name: "db-1", Zone: "backend"},
			Netns:         "zndemo-db-1-7",
			IP:            netip.MustParsePrefix("10.0.2.2/24"),
		},
		{
			ContainerSpec: ContainerSpec{Name: "mon-1", Zone: "mgmt"},
			Netns:         "zndemo-mon-1-7",
			Err:           errors.New("zonenet ADD: CNI error 11: boom\nsecond line"),
		},
	}
	var b strings.Builder
	if err := WriteContainers(&b, cs); err != nil {
		t.Fatal(err)
	}
	want := `CONTAINER  ZONE      IP           MAC                HOST VETH       NETNS
web-1      frontend  10.0.1.2/24  aa:bb:cc:dd:ee:ff  zn0123456789ab  zndemo-web-1-7
db-1       backend   10.0.2.2/24  -                  -               zndemo-db-1-7
mon-1      mgmt      FAILED       -                  -               zndemo-mon-1-7
mon-1: zonenet ADD: CNI error 11: boom second line
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func testMatrix() Matrix {
	rows := []Endpoint{{Name: "a"}, {Name: "b"}}
	cols := append(rows[:2:2], Endpoint{Name: GatewayName, IsGateway: true})
	m := NewMatrix(rows, cols)
	m.Cells[0][1].Outcome = OK
	m.Cells[0][2].Outcome = OK
	m.Cells[1][0].Outcome = Timeout
	m.Cells[1][2].Outcome = Refused
	return m
}

func TestWriteMatrix(t *testing.T) {
	m := testMatrix()
	want := Expected(m, func(src, dst Endpoint) Outcome {
		if src.Name == "b" && dst.Name == "a" {
			return Timeout
		}
		return OK
	})
	var b strings.Builder
	if err := WriteMatrix(&b, m, &want); err != nil {
		t.Fatal(err)
	}
	exp := `FROM \ TO  a        b   host-gw
a          -        ok  ok
b          timeout  -   refused!
`
	if got := b.String(); got != exp {
		t.Errorf("matrix:\n%s\nwant:\n%s", got, exp)
	}

	b.Reset()
	if err := WriteMatrix(&b, m, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "!") {
		t.Errorf("no expectation given, but a cell is marked:\n%s", b.String())
	}
}

func TestSummary(t *testing.T) {
	if got, want := Summary(testMatrix()), "2 ok, 1 refused, 1 timeout"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if got := Summary(NewMatrix(nil, nil)); got != "nothing probed" {
		t.Errorf("Summary(empty) = %q", got)
	}
}
