package acl

// WithLock runs fn while holding r's lock, the one every zonenet process
// takes around its iptables read-modify-write sequences (for Exec,
// DefaultLockPath). Work that spans more than acl, such as a host cleanup
// that must see bridges and chains in one consistent state, holds it
// across all of its steps; fn must then not call the acl functions that
// take the lock themselves.
func WithLock(r Runner, fn func() error) error { return locked(r, fn) }
