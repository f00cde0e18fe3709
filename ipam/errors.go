package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

var (
	// ErrExhausted means a pool has no free address. Allocate returns it
	// wrapped in an *ExhaustedError.
	ErrExhausted = errors.New("no free address")
	// ErrLockTimeout means another process held the store for longer than
	// the lock timeout given to Open.
	ErrLockTimeout = errors.New("store lock timeout")
	// ErrCorrupt means the store file or a record in it cannot be read.
	ErrCorrupt = errors.New("store corrupt")
)

// ExhaustedError names the pool that ran out of addresses.
// errors.Is(err, ErrExhausted) holds for it.
type ExhaustedError struct {
	Network string
	Zone    string
	Subnet  netip.Prefix
	First   netip.Addr // assignable range searched, inclusive
	Last    netip.Addr
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("zone %s (%s) of network %s has no free address in %s-%s",
		e.Zone, e.Subnet, e.Network, e.First, e.Last)
}

func (e *ExhaustedError) Unwrap() error { return ErrExhausted }

// StaticError rejects a requested static address.
type StaticError struct {
	IP     netip.Addr
	Reason string
	// Network and Zone say where the address was requested; informative.
	Network string
	Zone    string
}

func (e *StaticError) Error() string {
	return fmt.Sprintf("static address %s for zone %s of network %s: %s", e.IP, e.Zone, e.Network, e.Reason)
}

// lockTimeoutError reads well on its own and still matches ErrLockTimeout.
type lockTimeoutError struct {
	path    string
	timeout time.Duration
}

func (e *lockTimeoutError) Error() string {
	return fmt.Sprintf("store %s is locked by another process for more than %s", e.path, e.timeout)
}

func (e *lockTimeoutError) Is(target error) bool { return target == ErrLockTimeout }
