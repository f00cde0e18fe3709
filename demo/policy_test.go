package demo

import (
	"bytes"
	"net/netip"
	"os"
	"testing"
)

// TestReferencePolicyIsDeployed keeps the built-in policy identical to the
// one deployed.
func TestReferencePolicyIsDeployed(t *testing.T) {
	want, err := os.ReadFile("../deploy/policy-reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ReferencePolicy, want) {
		t.Error("demo/reference-policy.yaml differs from deploy/policy-reference.yaml: copy it over")
	}
	if err := CheckPolicy(ReferencePolicy); err != nil {
		t.Errorf("the reference policy does not fit the demo's zones: %v", err)
	}
}

// TestPolicyTable checks the truth table of the reference policy on the
// demo's endpoints against the rules as the mission states them.
func TestPolicyTable(t *testing.T) {
	d, err := New(Config{Plugin: "/bin/true", Policy: ReferencePolicy})
	if err != nil {
		t.Fatal(err)
	}
	ep := func(name, zone, ip, gw string) Endpoint {
		return Endpoint{Name: name, Zone: zone, Addr: netip.MustParseAddr(ip), Gateway: netip.MustParseAddr(gw)}
	}
	web := ep("web-1", "frontend", "10.0.1.2", "10.0.1.1")
	web2 := ep("web-2", "frontend", "10.0.1.3", "10.0.1.1")
	db := ep("db-1", "backend", "10.0.2.2", "10.0.2.1")
	mon := ep("mon-1", "mgmt", "10.0.3.2", "10.0.3.1")
	admin := ep("admin-1", "mgmt", "10.0.3.10", "10.0.3.1")
	gw := Endpoint{Name: GatewayName, IsGateway: true}
	for _, tt := range []struct {
		src, dst Endpoint
		port     int
		want     Outcome
	}{
		{web, db, 8080, OK},
		{web, db, 3306, Timeout},
		{admin, db, 3306, OK},
		{admin, db, 8080, Timeout},
		{mon, db, 3306, Timeout},
		{db, web, 8080, Timeout},
		{web, web2, 3306, OK},
		{mon, admin, 8080, OK},
		{web, gw, 8080, Timeout},
		{admin, gw, 3306, Timeout},
	} {
		if got := PolicyTable(d.Policy(), tt.port)(tt.src, tt.dst); got != tt.want {
			t.Errorf("%s -> %s:%d = %s, want %s", tt.src.Name, tt.dst.Name, tt.port, got, tt.want)
		}
		if got := PolicyTable(nil, tt.port)(tt.src, tt.dst); got != OK {
			t.Errorf("no policy: %s -> %s:%d = %s, want ok", tt.src.Name, tt.dst.Name, tt.port, got)
		}
	}
	if _, err := New(Config{Plugin: "/bin/true", Policy: []byte("version: 1\nrules: [{name: x}]\n")}); err == nil {
		t.Error("New accepted an invalid policy")
	}
}
