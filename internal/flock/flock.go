// Package flock takes an exclusive lock on a file, blocking in the kernel
// rather than polling, with a timeout.
package flock

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held lock. A polling lock (bbolt's polls every 50 ms)
// turns a burst of parallel plugin execs into a queue of sleepers and
// lets late comers overtake; a blocking flock is woken by the kernel the
// moment the holder closes.
type Lock struct{ f *os.File }

// ErrTimeout: another process held the lock for longer than the timeout.
var ErrTimeout = errors.New("lock timeout")

// Acquire blocks until the lock on path is held or timeout passes. A
// waiter that gave up releases the lock at once if it gets it later.
func Acquire(path string, timeout time.Duration) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		return &Lock{f: f}, nil
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
		return &Lock{f: f}, nil
	case <-timer.C:
		mu.Lock()
		defer mu.Unlock()
		select {
		case err := <-done: // won the race against the timer after all
			if err == nil {
				return &Lock{f: f}, nil
			}
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		default:
			abandoned = true
			return nil, ErrTimeout
		}
	}
}

// Unlock releases the lock; a nil Lock is fine.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}
