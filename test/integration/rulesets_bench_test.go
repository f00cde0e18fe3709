//go:build linux

package integration

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zonenet/zonenet/acl"
	"github.com/zonenet/zonenet/conf"
	"github.com/zonenet/zonenet/test/cnitest"
)

// plainRunner hides the sets of the runner it wraps, so the policy is
// rendered one rule per address, as before address lists became sets.
type plainRunner struct{ acl.Runner }

var benchModes = []struct {
	name string
	wrap func(acl.Runner) acl.Runner
}{
	{"sets", func(r acl.Runner) acl.Runner { return r }},
	{"plain", func(r acl.Runner) acl.Runner { return plainRunner{r} }},
}

// benchPolicies parses two list policies of n rules for a zone, differing
// in the last rule's source: the second has last there.
func benchPolicies(b *testing.B, n int, zone conf.Zone, last netip.Addr) [2]*conf.Policy {
	b.Helper()
	var out [2]*conf.Policy
	for i, doc := range []string{listDoc(n, nil), listDoc(n, map[int]netip.Addr{n - 1: last})} {
		p, _, err := conf.ParsePolicy([]byte(doc), []conf.Zone{zone})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = p
	}
	return out
}

// BenchmarkApplyFilterLists times ApplyFilter of a policy of n
// single-source rules to one port, in a fresh namespace holding the
// previous version of the policy (one source changed), with sets and as
// plain rules. first-ms is the apply into an empty namespace.
//
//	sudo go test -run '^$' -bench ApplyFilterLists -benchtime 5x ./test/integration/
func BenchmarkApplyFilterLists(b *testing.B) {
	cnitest.RequireRoot(b)
	for _, n := range []int{100, 1000, 10000} {
		subnet := cnitest.Subnet4(b)
		zone := conf.Zone{Name: "backend", Subnet: subnet, Gateway: cnitest.Nth(subnet, 1)}
		pols := benchPolicies(b, n, zone, netip.MustParseAddr("192.0.2.1"))
		for _, m := range benchModes {
			b.Run(fmt.Sprintf("%s/rules=%d", m.name, n), func(b *testing.B) {
				host := cnitest.NewNS(b, "znt-bench")
				r := m.wrap(acl.Exec{LockPath: filepath.Join(b.TempDir(), "lock")})
				apply := func(p *conf.Policy) {
					if err := host.Do(func() error { return acl.ApplyFilter(r, "bench", p) }); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				apply(pols[0])
				first := time.Since(start)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					apply(pols[(i+1)%2])
				}
				b.StopTimer()
				b.ReportMetric(float64(first.Microseconds())/1000, "first-ms")
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/apply")
			})
		}
	}
}

// BenchmarkListConnect times a TCP connect and one echo from an outside
// namespace to a server in the zone, routed by a namespace holding a
// policy of 10,000 single-source rules where the client's address is the
// last: plain rules make the first packet walk all of them.
//
//	sudo go test -run '^$' -bench ListConnect ./test/integration/
func BenchmarkListConnect(b *testing.B) {
	cnitest.RequireRoot(b)
	const n = 10000
	subnet, link := cnitest.Subnet4(b), cnitest.Subnet4(b)
	gw, srv := cnitest.Nth(subnet, 1), cnitest.Nth(subnet, 5)
	hostSide, client := cnitest.Nth(link, 1), cnitest.Nth(link, 2)
	zone := conf.Zone{Name: "backend", Subnet: subnet, Gateway: gw}
	pols := benchPolicies(b, n, zone, client)
	for _, m := range benchModes {
		b.Run(fmt.Sprintf("%s/rules=%d", m.name, n), func(b *testing.B) {
			host := cnitest.NewNS(b, "znt-bench")
			host.Run(b, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			server, out := cnitest.NewNS(b, "znt-bsrv"), cnitest.NewNS(b, "znt-bcli")
			cnitest.Connect(b, host, netip.PrefixFrom(gw, 24).String(), server, netip.PrefixFrom(srv, 24).String())
			cnitest.Connect(b, host, netip.PrefixFrom(hostSide, 24).String(), out, netip.PrefixFrom(client, 24).String())
			server.Run(b, "ip", "route", "add", "default", "via", gw.String())
			out.Run(b, "ip", "route", "add", "default", "via", hostSide.String())
			target := hostPort(srv, 5432)
			cnitest.EchoTCP(b, server, target, "db")
			r := m.wrap(acl.Exec{LockPath: filepath.Join(b.TempDir(), "lock")})
			if err := host.Do(func() error { return acl.ApplyFilter(r, "bench", pols[1]) }); err != nil {
				b.Fatal(err)
			}
			cnitest.ExpectTCP(b, out, target, "db")
			took := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := cnitest.TalkTCP(out, target, 3*time.Second); err != nil {
					b.Fatal(err)
				}
				took[i] = time.Since(start)
			}
			b.StopTimer()
			// The median: a shared machine's stalls skew the mean.
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-us")
		})
	}
}
