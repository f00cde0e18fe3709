// Package daemontest holds test doubles of the daemon's interfaces.
package daemontest

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"sync"
	"time"

	"github.com/zonenet/zonenet/daemon"
)

// Claimer hands out the blocks of a subnet in address order, as if this
// node were the only one claiming: the first block, then the next.
type Claimer struct {
	// Delay is waited before each claim, as a cluster round trip would.
	Delay time.Duration
	// Limit caps the blocks handed out per subnet; 0: every block.
	Limit int

	mu      sync.Mutex
	err     error
	next    map[netip.Prefix]int
	claimed []netip.Prefix
	calls   int
}

// Fail makes every later claim fail with err (nil: succeed again), e.g.
// daemon.ErrStoreUnreachable.
func (c *Claimer) Fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
}

// Claim implements daemon.Claimer.
func (c *Claimer) Claim(ctx context.Context, network, zone string, subnet netip.Prefix, bits int) (netip.Prefix, error) {
	if c.Delay > 0 {
		select {
		case <-time.After(c.Delay):
		case <-ctx.Done():
			return netip.Prefix{}, ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.err != nil {
		return netip.Prefix{}, fmt.Errorf("fake cluster store: %w", c.err)
	}
	if c.next == nil {
		c.next = map[netip.Prefix]int{}
	}
	i := c.next[subnet]
	if (c.Limit > 0 && i >= c.Limit) || bits-subnet.Bits() < 63 && uint64(i) >= 1<<(bits-subnet.Bits()) {
		return netip.Prefix{}, fmt.Errorf("fake cluster store: %d blocks of %s given out: %w", i, subnet, daemon.ErrNoFreeBlock)
	}
	c.next[subnet] = i + 1
	b := NthBlock(subnet, bits, i)
	c.claimed = append(c.claimed, b)
	return b, nil
}

// Claimed returns the blocks handed out so far, in order.
func (c *Claimer) Claimed() []netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]netip.Prefix(nil), c.claimed...)
}

// Calls counts the claims asked for, failed ones included.
func (c *Claimer) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// NthBlock is the i-th block of prefix length bits in subnet.
func NthBlock(subnet netip.Prefix, bits, i int) netip.Prefix {
	base := new(big.Int).SetBytes(subnet.Masked().Addr().AsSlice())
	step := new(big.Int).Lsh(big.NewInt(int64(i)), uint(subnet.Addr().BitLen()-bits))
	v := new(big.Int).Add(base, step).FillBytes(make([]byte, subnet.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(v)
	return netip.PrefixFrom(a, bits)
}
