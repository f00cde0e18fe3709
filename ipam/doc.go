// Package ipam allocates container addresses from the pools of a zone and
// keeps the local, crash-safe store of attachments.
//
// # Store layout
//
// One bbolt file holds every network:
//
//	meta/schema                      "1"; the bucket layout below
//	networks/<network>/attachments   tuple(containerID, ifName) -> JSON record {"v":1, ...}
//	networks/<network>/ips           family byte + address bytes -> tuple(containerID, ifName)
//	networks/<network>/cursors       tuple(zone, pool subnet) -> ip key of the last dynamic hand-out
//	networks/<network>/blocks        tuple(zone) + ip key of the block + prefix length -> block text
//
// A tuple is each field with 0x00 escaped as 0x00 0xFF and terminated by
// 0x00 0x01: any byte string is a safe container ID or interface name, and
// bytewise key order is (containerID, ifName) order, which List returns
// without sorting. The ips index answers "is this address taken?" and
// Owner with one B+tree lookup; its keys sort numerically per family, so
// one Seek finds the next lease at or above an address.
//
// # One transaction per mutation
//
// Allocate reads the index, picks addresses, writes the index entries, the
// cursor and the record in a single read-write transaction. bbolt commits it
// atomically and fsyncs before returning, so a crash (or a kill of the
// plugin) leaves either all of it or none of it: never a lease without its
// record, which would leak the address, nor a record without its lease,
// which would hand the address out twice. An exclusive
// flock on "<db>.lock", taken in Open before bbolt opens the file and
// bounded by the caller's timeout, serialises concurrent plugin execs. It
// is a blocking flock, so the next waiter runs as soon as the holder
// closes (bbolt's own lock retries only every 50 ms). flock locks belong
// to the open file, so two Stores opened in one process exclude each other
// too.
//
// The blocks bucket holds, in cluster mode, the blocks of each zone this
// node owns (see blocks.go); a file without it reads as "no blocks", so
// the layout version did not change.
//
// # Cursor
//
// Dynamic allocation is round robin per (network, zone, pool subnet): the
// search starts just after the address last handed out and wraps to the
// start of the range once. A released address is reused as late as
// possible, and in the usual case the first candidate is free, so an
// allocation costs one Seek whatever the number of leases. When candidates
// are taken the walk advances the index cursor in step with the candidate
// address, so it costs the run of taken addresses, never the size of the
// range: an IPv6 /64 is never enumerated. The network address and the IPv4
// broadcast address are never handed out, whatever the configured range
// says; the gateway and excluded addresses are skipped.
package ipam
