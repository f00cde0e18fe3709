package daemon_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zonenet/zonenet/daemon"
	"github.com/zonenet/zonenet/daemon/api"
	"github.com/zonenet/zonenet/daemon/daemontest"
)

func TestServeSocket(t *testing.T) {
	srv := daemon.NewLocalServer(t.TempDir(), &daemontest.Claimer{}, nil)
	c, stop := serve(t, srv)
	st, err := os.Stat(c.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&fs.ModeSocket == 0 || st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %s, want a socket with 0660", st.Mode())
	}
	if dst, err := os.Stat(filepath.Dir(c.Socket)); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("socket directory: %v, %v; want mode 0700", dst.Mode(), err)
	}
	if h, err := c.Health(context.Background()); err != nil || h.Status != "ok" {
		t.Errorf("health: %+v, %v", h, err)
	}
	// A second daemon does not take over a socket that answers.
	err = daemon.NewLocalServer(t.TempDir(), &daemontest.Claimer{}, nil).Serve(context.Background(), c.Socket)
	if err == nil || !strings.Contains(err.Error(), "another process serves it") {
		t.Errorf("second Serve on a live socket: %v", err)
	}
	stop()
	if _, err := os.Lstat(c.Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still there after stop: %v", err)
	}
	_, err = c.Health(context.Background())
	var nr *api.NotRunningError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "zonenetd is not running (no socket at "+c.Socket+"): start zonenetd") {
		t.Errorf("health after stop: %v", err)
	}
}

func TestStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "zonenetd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // as a daemon that was killed leaves it
	c := api.Client{Socket: sock}
	_, err = c.Health(context.Background())
	if !strings.Contains(err.Error(), "nothing accepts connections on "+sock) {
		t.Errorf("stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.NewLocalServer(t.TempDir(), &daemontest.Claimer{}, nil).Serve(ctx, sock) }()
	deadline := time.Now().Add(5 * time.Second)
	for _, err = c.Health(ctx); err != nil && time.Now().Before(deadline); _, err = c.Health(ctx) {
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("Serve did not take over the stale socket: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestServeKeepsOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zonenetd.sock")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := daemon.NewLocalServer(t.TempDir(), &daemontest.Claimer{}, nil).Serve(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Serve over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Error("the file was replaced")
	}
	if err := daemon.NewLocalServer(t.TempDir(), nil, nil).Serve(context.Background(), "rel.sock"); err == nil {
		t.Error("relative socket path accepted")
	}
}
