package ipam

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fileLock is an exclusive flock on a file beside the database, taken
// before bbolt opens it. bbolt's own lock polls every 50 ms, which turns a
// burst of parallel plugin execs into a queue of sleepers; a blocking
// flock is woken by the kernel the moment the holder closes.
type fileLock struct{ f *os.File }

// lockFile blocks until the lock is held or timeout passes. A waiter that
// gave up releases the lock at once if it gets it later.
func lockFile(path string, timeout time.Duration) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		return &fileLock{f: f}, nil
	}
	var (
		mu        sync.Mutex
		abandoned bool
	)
	done := make(chan error, 1)
	go func() {
		var err error
		for {
			if err = unix.Flock(int(f.Fd()), unix.LOCK_EX); !errors.Is(err, unix.EINTR) {
				break
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			f.Close()
			return
		}
		done <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return &fileLock{f: f}, nil
	case <-timer.C:
		mu.Lock()
		defer mu.Unlock()
		select {
		case err := <-done: // won the race against the timer after all
			if err == nil {
				return &fileLock{f: f}, nil
			}
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		default:
			abandoned = true
			return nil, errLockTimeout
		}
	}
}

var errLockTimeout = errors.New("lock timeout")

func (l *fileLock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}
