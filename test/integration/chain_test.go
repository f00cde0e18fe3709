//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/zonenet/zonenet/test/cnitest"
)

// TestChainLibcni runs zonenet first in a conflist with Debian's reference
// portmap, bandwidth, tuning and firewall plugins through libcni, the
// library runtimes use. Each later plugin acts on zonenet's result
// (prevResult), which is how we know the result is usable: portmap
// publishes a port to the container address, bandwidth shapes the host
// veth, tuning sets a sysctl on the container interface, firewall admits
// the container address. CHECK and DEL go through the chain too.
func TestChainLibcni(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "1.0.0") // the reference plugins stop at 1.0.0
	// Dual stack: Debian's portmap (plugins 1.1.1) fails CHECK for an
	// IPv4-only container, looking for an IPv6 chain it never made
	// (containernetworking/plugins#819).
	e.conf.Zones[0].Subnet6 = cnitest.Subnet6(t).String()
	z := e.conf.Zones[0]

	link := cnitest.Subnet4(t)
	hostOut, outsideAddr := cnitest.Nth(link, 1), cnitest.Nth(link, 2)
	outside := cnitest.NewNS(t, "znt-out")
	cnitest.Connect(t, e.host, netip.PrefixFrom(hostOut, 24).String(), outside, netip.PrefixFrom(outsideAddr, 24).String())

	zn := map[string]any{}
	if err := json.Unmarshal(e.conf.JSON(t), &zn); err != nil {
		t.Fatal(err)
	}
	delete(zn, "name")
	delete(zn, "cniVersion")
	list := map[string]any{
		"cniVersion": "1.0.0",
		"name":       e.conf.Name,
		"plugins": []any{
			zn,
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
			map[string]any{"type": "bandwidth",
				"ingressRate": 100_000_000, "ingressBurst": 1_000_000,
				"egressRate": 100_000_000, "egressBurst": 1_000_000},
			map[string]any{"type": "tuning", "sysctl": map[string]string{"net.ipv4.conf.eth0.arp_notify": "1"}},
			map[string]any{"type": "firewall", "backend": "iptables"},
		},
	}
	conflist, err := libcni.ConfListFromBytes(mustJSON(t, list))
	if err != nil {
		t.Fatalf("conflist: %v", err)
	}
	exec := &cnitest.NSExec{NS: e.host}
	t.Cleanup(func() {
		if t.Failed() && exec.Stderr.Len() > 0 {
			t.Logf("plugins' stderr:\n%s", exec.Stderr.String())
		}
	})
	cni := libcni.NewCNIConfigWithCacheDir([]string{e.bins.Dir, cnitest.DefaultCNIPath}, t.TempDir(), exec)

	c := e.newCtr()
	const hostPortNum = 18090
	rt := &libcni.RuntimeConf{
		ContainerID: c.ID,
		NetNS:       c.NS.Path,
		IfName:      c.IfName,
		Args:        [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}},
		CapabilityArgs: map[string]any{
			"portMappings": []map[string]any{{"hostPort": hostPortNum, "containerPort": 80, "protocol": "tcp"}},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cni.AddNetworkList(ctx, conflist, rt)
	if err != nil {
		t.Fatalf("ADD through the chain: %v", err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		t.Fatalf("chain result: %v", err)
	}
	c.Res = r
	att := e.expectAttached(c, z)

	// tuning acted inside the container on the interface zonenet made.
	if v := c.NS.Sysctl(t, "net/ipv4/conf/eth0/arp_notify"); v != "1" {
		t.Errorf("tuning: arp_notify = %s, want 1", v)
	}
	// firewall admitted the container address.
	if rules := rulesNaming(t, e.host, att.ip4()); !containsAny(rules, "CNI-FORWARD") {
		t.Errorf("firewall: no CNI-FORWARD rule for %s; rules naming it:\n%s", att.ip4(), strings.Join(rules, "\n"))
	}
	// portmap published the port to the container address.
	if rules := rulesNaming(t, e.host, att.ip4()); !containsAny(rules, "DNAT") {
		t.Errorf("portmap: no DNAT rule to %s; rules naming it:\n%s", att.ip4(), strings.Join(rules, "\n"))
	}
	cnitest.EchoTCP(t, c.NS, "0.0.0.0:80", "chained")
	cnitest.ExpectTCP(t, outside, hostPort(hostOut, hostPortNum), "chained")
	// bandwidth found zonenet's host veth in the result and shaped it.
	qdiscs := hostQdiscs(t, e.host, att.HostVeth)
	if !containsAny(qdiscs, "tbf") {
		t.Errorf("bandwidth: host veth %s qdiscs %v, want a tbf", att.HostVeth, qdiscs)
	}
	ifbs := linksOfType(t, e.host, "ifb")
	if len(ifbs) != 1 {
		t.Errorf("bandwidth: ifb devices %v, want one for egress shaping", ifbs)
	}

	// Debian's portmap (plugins 1.1.1) cannot pass CHECK at all: it looks
	// for its IPv4 rules in the IPv6 table too (containernetworking/plugins
	// #819). So CHECK runs the same chain without portmap: libcni hands
	// each plugin the cached ADD result as prevResult.
	noPortmap := map[string]any{"cniVersion": list["cniVersion"], "name": list["name"]}
	var plugins []any
	for _, p := range list["plugins"].([]any) {
		if p.(map[string]any)["type"] != "portmap" {
			plugins = append(plugins, p)
		}
	}
	noPortmap["plugins"] = plugins
	checkList, err := libcni.ConfListFromBytes(mustJSON(t, noPortmap))
	if err != nil {
		t.Fatal(err)
	}
	if err := cni.CheckNetworkList(ctx, checkList, rt); err != nil {
		t.Errorf("CHECK through the chain: %v", err)
	}
	if err := cni.DelNetworkList(ctx, conflist, rt); err != nil {
		t.Fatalf("DEL through the chain: %v", err)
	}
	e.expectDetached(c, att)
	if ifbs := linksOfType(t, e.host, "ifb"); len(ifbs) != 0 {
		t.Errorf("bandwidth ifb devices left after DEL: %v", ifbs)
	}
	cnitest.ExpectNoTCP(t, outside, hostPort(hostOut, hostPortNum))
	if err := cni.DelNetworkList(ctx, conflist, rt); err != nil {
		t.Errorf("second DEL through the chain: %v", err)
	}
}

func containsAny(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func hostQdiscs(t *testing.T, ns *cnitest.NS, link string) []string {
	t.Helper()
	var out []string
	err := ns.WithHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(link)
		if err != nil {
			return err
		}
		qs, err := h.QdiscList(l)
		if err != nil {
			return err
		}
		for _, q := range qs {
			out = append(out, q.Type())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("qdiscs of %s: %v", link, err)
	}
	return out
}

func linksOfType(t *testing.T, ns *cnitest.NS, typ string) []string {
	t.Helper()
	var out []string
	for _, l := range ns.Links(t) {
		if l.Type() == typ {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}
