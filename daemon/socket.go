package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Serve listens on the unix socket at socketPath until ctx ends, then
// stops, letting requests in flight finish for a few seconds, and removes
// the socket. The socket is mode 0660 in a directory created 0700: only
// root (and the socket's group) may ask for blocks. A socket left by a
// daemon that died is removed; one that still answers is not taken over.
func (s *LocalServer) Serve(ctx context.Context, socketPath string) error {
	if !filepath.IsAbs(socketPath) {
		return fmt.Errorf("socket %q: must be an absolute path", socketPath)
	}
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o700); err != nil {
		return fmt.Errorf("directory of socket %s: %w", socketPath, err)
	}
	if err := removeStale(socketPath); err != nil {
		return err
	}
	l, err := net.Listen("unix", socketPath)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", socketPath, err)
	}
	// The listener unlinks the socket when closed, Shutdown included.
	if err := os.Chmod(socketPath, 0o660); err != nil {
		l.Close()
		return fmt.Errorf("mode of socket %s: %w", socketPath, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A claim may queue behind others of its zone: bounded by the
		// plugin's timeout, not here.
		WriteTimeout: time.Minute,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	s.log.Info("serving the local endpoint", "socket", socketPath, "store", s.store)
	select {
	case err := <-done:
		return fmt.Errorf("serve %s: %w", socketPath, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-done
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("stop serving %s: %w", socketPath, err)
	}
	return nil
}

// removeStale removes a socket nobody listens on. Anything else at the
// path is left alone and reported.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if st.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("socket %s: the path exists and is not a socket (%s); remove it", path, st.Mode().Type())
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("socket %s: another process serves it (is zonenetd already running?)", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}
