package netns

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// setLoopbackUp brings lo up in the current namespace.
func setLoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// LoopbackUp brings lo up inside the namespace at path.
func LoopbackUp(path string) error {
	return Do(path, setLoopbackUp)
}
