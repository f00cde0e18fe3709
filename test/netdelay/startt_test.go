//go:build linux

package netdelay

import "testing"

// StartT starts a delayer for a test and stops it when the test ends,
// failed or not; a failure to start or to stop fails the test. Register
// it after the namespace, so the cleanups (last in, first out) stop the
// delayer before the namespace goes.
func StartT(t testing.TB, nsPath string, m Match, o Options) *Delayer {
	t.Helper()
	d, err := StartWith(nsPath, m, o)
	if err != nil {
		t.Fatalf("netdelay: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("netdelay: stop: %v", err)
		}
	})
	return d
}
