package conf

import (
	"errors"
	"testing"
)

// FuzzParse: any input either parses into a config whose invariants hold,
// or fails with a typed *Error. It never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(reference))
	f.Add([]byte(`{"name":"n","zones":[{"name":"a","subnet":"10.0.1.0/24","rangeStart":"10.0.1.9","exclude":["10.0.1.10"]}]}`))
	f.Add([]byte(`{"name":"n","mode":"host"}`))
	f.Add([]byte(`{"name":"n","zones":[{"name":"v6","subnet6":"fd00::/120","gateway6":"fd00::fe"}]}`))
	f.Add([]byte(`{"name":"n","mode":"none","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":2,"protocol":"UDP","hostIP":"::ffff:1.2.3.4"}]}}`))
	f.Add([]byte(`{"name":"n","store":"etcd","blockSize":28,"zones":[{"name":"a","subnet":"10.0.1.0/24","subnet6":"fd00::/64"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		for _, z := range c.Zones {
			if len(z.Bridge) == 0 || len(z.Bridge) > 15 {
				t.Fatalf("bridge %q", z.Bridge)
			}
			if z.Subnet.IsValid() && (!z.Subnet.Contains(z.Gateway) || !z.Subnet.Contains(z.RangeStart) ||
				!z.Subnet.Contains(z.RangeEnd) || z.RangeStart.Compare(z.RangeEnd) > 0) {
				t.Fatalf("zone %s v4 invariants: %+v", z.Name, z)
			}
			if z.Subnet6.IsValid() && (!z.Subnet6.Contains(z.Gateway6) || z.RangeStart6.Compare(z.RangeEnd6) > 0) {
				t.Fatalf("zone %s v6 invariants: %+v", z.Name, z)
			}
		}
		if c.Cluster() {
			for _, z := range c.Zones {
				for _, p := range z.Prefixes() {
					if b := c.BlockBits(p); b <= p.Bits() || b > p.Addr().BitLen()-2 {
						t.Fatalf("zone %s: block /%d for subnet %s", z.Name, b, p)
					}
				}
			}
		}
		if _, err := c.SelectZone(Args{}); err != nil && c.Mode == ModeBridge && len(c.Zones) > 0 {
			t.Fatalf("SelectZone: %v", err)
		}
	})
}

// FuzzParseArgs: CNI_ARGS parsing never panics and errors are typed.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"", "ZONE=a", "IgnoreUnknown=1;X=y", "IP=10.0.0.1,fd00::1;MAC=aa:bb:cc:dd:ee:ff", ";;", "K8S_POD_NAMESPACE=p;=", "IP=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, err := ParseArgs(s)
		var ce *Error
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("untyped error %T: %v", err, err)
		}
	})
}
