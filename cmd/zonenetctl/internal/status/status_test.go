package status

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/ipam"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestWrite(t *testing.T) {
	atts := []ipam.Attachment{
		{
			Key:      ipam.Key{Network: "prod", ContainerID: "0123456789abcdef0123", IfName: "eth0"},
			Zone:     "frontend",
			Mode:     "bridge",
			IPs:      []netip.Prefix{netip.MustParsePrefix("10.0.1.2/24"), netip.MustParsePrefix("fd00:0:1::2/64")},
			MAC:      "aa:bb:cc:dd:ee:ff",
			HostVeth: "zn0123456789ab",
			Created:  now.Add(-90 * time.Second),
		},
		{
			Key:     ipam.Key{Network: "prod", ContainerID: "short", IfName: "net1\tx"},
			Zone:    "mgmt",
			Mode:    "none",
			Created: now.Add(-3 * 24 * time.Hour),
		},
	}
	var b strings.Builder
	if err := Write(&b, atts, now); err != nil {
		t.Fatal(err)
	}
	want := `NETWORK  CONTAINER     IFNAME  ZONE      MODE    IPS                         MAC                HOST VETH       AGE
prod     0123456789ab  eth0    frontend  bridge  10.0.1.2/24,fd00:0:1::2/64  aa:bb:cc:dd:ee:ff  zn0123456789ab  1m
prod     short         net1?x  mgmt      none    -                           -                  -               3d
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteEmpty(t *testing.T) {
	var b strings.Builder
	if err := Write(&b, nil, now); err != nil {
		t.Fatal(err)
	}
	if b.String() != "no attachments\n" {
		t.Errorf("got %q", b.String())
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"},
		{59 * time.Second, "59s"},
		{61 * time.Second, "1m"},
		{59 * time.Minute, "59m"},
		{5 * time.Hour, "5h"},
		{47 * time.Hour, "47h"},
		{49 * time.Hour, "2d"},
		{-time.Hour, "-"},
	}
	for _, tt := range tests {
		if got := Age(now.Add(-tt.ago), now); got != tt.want {
			t.Errorf("Age(-%s) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := Age(time.Time{}, now); got != "-" {
		t.Errorf("Age(zero) = %q", got)
	}
}

func TestShortID(t *testing.T) {
	if got := ShortID("0123456789abcdef"); got != "0123456789ab" {
		t.Errorf("ShortID = %q", got)
	}
	if got := ShortID("abc"); got != "abc" {
		t.Errorf("ShortID(short) = %q", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir, "prod"); !errors.Is(err, ErrNoStore) {
		t.Fatalf("Load of an empty dir = %v, want ErrNoStore", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DBName)); err == nil {
		t.Fatal("Load created a store")
	}

	st, err := ipam.Open(filepath.Join(dir, DBName), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"prod", "prod", "other"} {
		err := st.Put(ipam.Attachment{
			Key:  ipam.Key{Network: n, ContainerID: string(rune('a' + i)), IfName: "eth0"},
			Zone: "frontend", Mode: "bridge",
			IPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(2 + i)}), 24)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// While a plugin holds the store, status gives up quickly.
	start := time.Now()
	if _, err := Load(dir, "prod"); !errors.Is(err, ipam.ErrLockTimeout) {
		t.Errorf("Load while locked = %v, want a lock timeout", err)
	}
	if d := time.Since(start); d > 3*LockTimeout {
		t.Errorf("Load waited %s for the lock", d)
	}
	st.Close()

	atts, err := Load(dir, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 2 || atts[0].ContainerID != "a" || atts[1].ContainerID != "b" {
		t.Errorf("Load(prod) = %+v", atts)
	}
	if atts, err := Load(dir, "missing"); err != nil || len(atts) != 0 {
		t.Errorf("Load(missing) = %v, %v", atts, err)
	}
	if _, ok := any(&ipam.Store{}).(networkLister); ok {
		if atts, err := Load(dir, ""); err != nil || len(atts) != 3 {
			t.Errorf("Load(all) = %d attachments, %v; want 3", len(atts), err)
		}
	} else if _, err := Load(dir, ""); err == nil || !strings.Contains(err.Error(), "--network") {
		t.Errorf("Load(all) without a network lister = %v, want a hint to pass --network", err)
	}
}
