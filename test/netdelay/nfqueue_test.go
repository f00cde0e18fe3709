//go:build linux

package netdelay

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Byte layouts written out from linux/netfilter/nfnetlink_queue.h, so an
// encoder that drifts from the kernel's structures fails here and not as
// an EINVAL in a root test.

func TestVerdictMessage(t *testing.T) {
	got := verdictMessage(4100, 0x01020304)
	want := []byte{
		0, 0, 0, 0, // length, host order, filled below
		0, 0, // type, host order, filled below
		0, 0, // flags
		0, 0, 0, 0, // seq
		0, 0, 0, 0, // portid
		0, 0, 0x10, 0x04, // nfgenmsg: AF_UNSPEC, v0, queue 4100 big-endian
		12, 0, 2, 0, // nlattr: len 12, NFQA_VERDICT_HDR (host order, amd64)
		0, 0, 0, 1, // NF_ACCEPT
		1, 2, 3, 4, // packet id
	}
	binary.NativeEndian.PutUint32(want[0:], uint32(len(want)))
	binary.NativeEndian.PutUint16(want[4:], 3<<8|1)
	binary.NativeEndian.PutUint16(want[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint16(want[20:], 12)
	binary.NativeEndian.PutUint16(want[22:], 2)
	if !bytes.Equal(got, want) {
		t.Fatalf("verdict message\n got % x\nwant % x", got, want)
	}
}

func TestConfigMessage(t *testing.T) {
	b := configMessage(7, 42, 64, 1000)
	if n := binary.NativeEndian.Uint32(b); int(n) != len(b) {
		t.Fatalf("length field %d, message %d bytes", n, len(b))
	}
	if typ := binary.NativeEndian.Uint16(b[4:]); typ != 3<<8|2 {
		t.Errorf("type %#x, want NFNL_SUBSYS_QUEUE<<8|NFQNL_MSG_CONFIG", typ)
	}
	if f := binary.NativeEndian.Uint16(b[6:]); f != unix.NLM_F_REQUEST|unix.NLM_F_ACK {
		t.Errorf("flags %#x, want request|ack", f)
	}
	if seq := binary.NativeEndian.Uint32(b[8:]); seq != 42 {
		t.Errorf("seq %d", seq)
	}
	if q := binary.BigEndian.Uint16(b[18:]); q != 7 {
		t.Errorf("queue %d", q)
	}
	attrs := map[uint16][]byte{}
	var order []uint16
	for a := b[20:]; len(a) > 0; {
		l := int(binary.NativeEndian.Uint16(a))
		typ := binary.NativeEndian.Uint16(a[2:])
		attrs[typ] = a[4:l]
		order = append(order, typ)
		a = a[align4(l):]
	}
	want := map[uint16][]byte{
		nfqaCfgCmd:      {1, 0, 0, 0},       // BIND
		nfqaCfgParams:   {0, 0, 0, 64, 2},   // packed: be32 range, u8 COPY_PACKET
		nfqaCfgQueueMax: {0, 0, 0x03, 0xe8}, // 1000
		nfqaCfgFlags:    {0, 0, 0, 5},       // FAIL_OPEN|GSO
		nfqaCfgMask:     {0, 0, 0, 5},
	}
	for typ, w := range want {
		if !bytes.Equal(attrs[typ], w) {
			t.Errorf("attribute %d = % x, want % x", typ, attrs[typ], w)
		}
	}
	// The kernel applies the command first whatever the order; keeping
	// it first still makes a trace read naturally.
	if order[0] != nfqaCfgCmd {
		t.Errorf("attributes in order %v, want the command first", order)
	}
}

// packetMsg builds what the kernel sends for a queued packet.
func packetMsg(id uint32) []byte {
	hdr := binary.BigEndian.AppendUint32(nil, id)
	hdr = append(hdr, 0x08, 0x00, 3) // ETH_P_IP, NF_INET_LOCAL_OUT
	payload := make([]byte, 20)
	m := message(nfqnlMsgPacket, 4100, 0, 0,
		attr(5, []byte{0, 0, 0, 2}), // NFQA_IFINDEX_OUTDEV before the header, as a reorder test
		attr(nfqaPacketHdr, hdr),
		attr(10, payload))
	return m
}

func TestParse(t *testing.T) {
	ack := make([]byte, 36)
	binary.NativeEndian.PutUint32(ack, 36)
	binary.NativeEndian.PutUint16(ack[4:], unix.NLMSG_ERROR)
	binary.NativeEndian.PutUint32(ack[8:], 9)
	e := int32(-int32(unix.EBUSY))
	binary.NativeEndian.PutUint32(ack[16:], uint32(e))

	dgram := slices.Concat(packetMsg(11), packetMsg(12), ack)
	evs, err := parse(dgram)
	if err != nil {
		t.Fatal(err)
	}
	want := []event{{packet: true, id: 11}, {packet: true, id: 12}, {ack: true, seq: 9, errno: unix.EBUSY}}
	if !slices.Equal(evs, want) {
		t.Fatalf("parse = %+v, want %+v", evs, want)
	}

	long := slices.Clone(ack)
	binary.NativeEndian.PutUint32(long, 200) // a length past the end
	if _, err := parse(long); err == nil {
		t.Error("a message longer than its datagram was accepted")
	}
	noHdr := message(nfqnlMsgPacket, 1, 0, 0, attr(10, []byte{1, 2, 3, 4}))
	if _, err := parse(noHdr); err == nil {
		t.Error("a packet message without NFQA_PACKET_HDR was accepted")
	}
}

func TestDueKeepsOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(1000, 0)
	// Packets closer together than the jitter: each must wait for the
	// one ahead of it.
	var prev time.Time
	for i := 0; i < 2000; i++ {
		now := t0.Add(time.Duration(i) * 100 * time.Microsecond)
		d := due(now, 80*time.Millisecond, 10*time.Millisecond, rng, prev)
		if d.Before(prev) {
			t.Fatalf("packet %d due %v before the one ahead of it (%v)", i, d, prev)
		}
		if off := d.Sub(now); off < 70*time.Millisecond || off > 90*time.Millisecond {
			t.Fatalf("packet %d delayed %v, want 70-90ms", i, off)
		}
		prev = d
	}
	// Packets further apart than the jitter: the offsets spread over
	// the whole range.
	var offsets []time.Duration
	prev = time.Time{}
	for i := 0; i < 500; i++ {
		now := t0.Add(time.Duration(i) * 30 * time.Millisecond)
		d := due(now, 80*time.Millisecond, 10*time.Millisecond, rng, prev)
		offsets = append(offsets, d.Sub(now))
		prev = d
	}
	slices.Sort(offsets)
	if offsets[0] < 70*time.Millisecond || offsets[0] > 72*time.Millisecond ||
		offsets[len(offsets)-1] > 90*time.Millisecond || offsets[len(offsets)-1] < 88*time.Millisecond {
		t.Errorf("jitter spans %v-%v, want close to 70-90ms", offsets[0], offsets[len(offsets)-1])
	}
	// Without jitter the delay is exact, and a big jitter never goes
	// below zero.
	if d := due(t0, 80*time.Millisecond, 0, rng, time.Time{}); d.Sub(t0) != 80*time.Millisecond {
		t.Errorf("no jitter: delayed %v", d.Sub(t0))
	}
	for i := 0; i < 100; i++ {
		if d := due(t0, time.Millisecond, time.Second, rng, time.Time{}); d.Before(t0) {
			t.Fatalf("delay below zero: %v", d.Sub(t0))
		}
	}
}

func TestMatch(t *testing.T) {
	p := netip.MustParsePrefix
	good := Match{Chain: "OUTPUT", Out: "veth0", Dst: p("10.1.0.2/32"), Proto: "tcp"}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(good.spec(4100, "t1"), " ")
	want := "-o veth0 -d 10.1.0.2/32 -p tcp -m comment --comment netdelay q4100 t1 -j NFQUEUE --queue-num 4100 --queue-bypass"
	if got != want {
		t.Errorf("spec\n got %s\nwant %s", got, want)
	}
	if (Match{Out: "x"}).chain() != "POSTROUTING" {
		t.Error("the default chain is not POSTROUTING")
	}
	if !(Match{Src: p("fd00::/64")}).ipv6() || (Match{Src: p("10.0.0.0/8")}).ipv6() {
		t.Error("family of the match")
	}
	for name, m := range map[string]Match{
		"nothing selected":  {Chain: "FORWARD"},
		"unknown chain":     {Chain: "NAT", Out: "x"},
		"in on OUTPUT":      {Chain: "OUTPUT", In: "x"},
		"out on INPUT":      {Chain: "INPUT", Out: "x"},
		"long name":         {Out: "0123456789abcdef"},
		"space in name":     {Out: "a b"},
		"mixed families":    {Src: p("10.0.0.0/8"), Dst: p("fd00::/8")},
		"unknown proto":     {Out: "x", Proto: "sctp"},
		"icmp with v6":      {Dst: p("fd00::/8"), Proto: "icmp"},
		"icmpv6 with v4":    {Dst: p("10.0.0.0/8"), Proto: "icmpv6"},
		"in on POSTROUTING": {In: "x"},
	} {
		if err := m.validate(); err == nil {
			t.Errorf("%s: %+v accepted", name, m)
		}
	}
}
