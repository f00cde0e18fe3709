//go:build linux

package netdelay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The nfnetlink_queue protocol, written by hand: a handful of fixed
// structures (linux/netfilter/nfnetlink_queue.h) are all a delayer needs,
// which is less than a dependency would bring. Netlink headers are in host
// order; everything inside an nfnetlink message is big-endian.

const (
	nfnlSubsysQueue = 3 // NFNL_SUBSYS_QUEUE

	// nfqnl_msg_types
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	// nfqnl_attr_config
	nfqaCfgCmd      = 1
	nfqaCfgParams   = 2
	nfqaCfgQueueMax = 3
	nfqaCfgMask     = 4
	nfqaCfgFlags    = 5

	// nfqnl_msg_config_cmds
	nfqnlCfgCmdBind = 1

	nfqnlCopyPacket = 2 // NFQNL_COPY_PACKET

	// NFQA_CFG_F_FAIL_OPEN accepts packets the queue has no room for
	// instead of dropping them; NFQA_CFG_F_GSO hands over GSO packets
	// whole, so the kernel does not segment what it only has to delay.
	nfqaCfgFFailOpen = 1
	nfqaCfgFGSO      = 4

	// nfqnl_attr_type
	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2

	nfAccept = 1 // NF_ACCEPT

	nlHdrLen    = unix.NLMSG_HDRLEN // 16
	nfgenHdrLen = 4                 // struct nfgenmsg
)

// msgType is the netlink message type of an nfnetlink_queue message.
func msgType(m uint8) uint16 { return nfnlSubsysQueue<<8 | uint16(m) }

func align4(n int) int { return (n + 3) &^ 3 }

// attr encodes one netlink attribute, padded to four bytes.
func attr(typ uint16, payload []byte) []byte {
	b := make([]byte, align4(4+len(payload)))
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(payload)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], payload)
	return b
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// message encodes an nfnetlink_queue message for queue with the given
// attributes.
func message(typ uint8, queue uint16, flags uint16, seq uint32, attrs ...[]byte) []byte {
	n := nlHdrLen + nfgenHdrLen
	for _, a := range attrs {
		n += len(a)
	}
	b := make([]byte, nlHdrLen+nfgenHdrLen, n)
	binary.NativeEndian.PutUint32(b[0:], uint32(n))
	binary.NativeEndian.PutUint16(b[4:], msgType(typ))
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	// nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, queue number.
	binary.BigEndian.PutUint16(b[nlHdrLen+2:], queue)
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

// configMessage binds queue and sets it up: copy-packet mode with only
// copyRange bytes (the delayer looks at nothing past the headers), at most
// maxLen packets held, fail-open and GSO on.
func configMessage(queue uint16, seq uint32, copyRange, maxLen uint32) []byte {
	cmd := []byte{nfqnlCfgCmdBind, 0, 0, 0} // command, pad, pf (unused since 3.8)
	params := append(be32(copyRange), nfqnlCopyPacket)
	flags := uint32(nfqaCfgFFailOpen | nfqaCfgFGSO)
	return message(nfqnlMsgConfig, queue, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq,
		attr(nfqaCfgCmd, cmd),
		attr(nfqaCfgParams, params),
		attr(nfqaCfgQueueMax, be32(maxLen)),
		attr(nfqaCfgFlags, be32(flags)),
		attr(nfqaCfgMask, be32(flags)))
}

// verdictMessage accepts the packet with the given id.
func verdictMessage(queue uint16, id uint32) []byte {
	hdr := append(be32(nfAccept), be32(id)...)
	return message(nfqnlMsgVerdict, queue, unix.NLM_F_REQUEST, 0, attr(nfqaVerdictHdr, hdr))
}

// event is one netlink message read from the socket that matters here.
type event struct {
	packet bool   // an NFQNL_MSG_PACKET; id is its packet id
	id     uint32 //
	ack    bool   // an NLMSG_ERROR; errno 0 is an acknowledgement
	seq    uint32
	errno  unix.Errno
}

// parse splits a datagram into netlink messages and decodes the queued
// packets and acknowledgements among them.
func parse(b []byte) ([]event, error) {
	var out []event
	for len(b) >= nlHdrLen {
		n := int(binary.NativeEndian.Uint32(b[0:]))
		if n < nlHdrLen || n > len(b) {
			return out, fmt.Errorf("netlink message of %d bytes in %d", n, len(b))
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		seq := binary.NativeEndian.Uint32(b[8:])
		body := b[nlHdrLen:n]
		switch {
		case typ == unix.NLMSG_ERROR:
			if len(body) < 4 {
				return out, errors.New("short netlink error message")
			}
			e := int32(binary.NativeEndian.Uint32(body))
			out = append(out, event{ack: true, seq: seq, errno: unix.Errno(-e)})
		case typ == msgType(nfqnlMsgPacket):
			id, ok := packetID(body)
			if !ok {
				return out, errors.New("queued packet without a packet header")
			}
			out = append(out, event{packet: true, id: id})
		}
		b = b[min(align4(n), len(b)):]
	}
	return out, nil
}

// packetID finds NFQA_PACKET_HDR in the body of a packet message.
func packetID(body []byte) (uint32, bool) {
	if len(body) < nfgenHdrLen {
		return 0, false
	}
	a := body[nfgenHdrLen:]
	for len(a) >= 4 {
		l := int(binary.NativeEndian.Uint16(a[0:]))
		typ := binary.NativeEndian.Uint16(a[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(a) {
			return 0, false
		}
		// struct nfqnl_msg_packet_hdr: be32 packet_id, be16
		// hw_protocol, u8 hook.
		if typ == nfqaPacketHdr && l >= 8 {
			return binary.BigEndian.Uint32(a[4:]), true
		}
		a = a[min(align4(l), len(a)):]
	}
	return 0, false
}

// conn is a NETLINK_NETFILTER socket. It is opened inside the namespace
// and belongs to it from then on, so it can be used from any goroutine;
// reads go through the runtime poller, so Close wakes a blocked reader.
type conn struct {
	f   *os.File
	seq atomic.Uint32
}

// openConn opens the socket in the calling thread's namespace.
func openConn() (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	// Room for a burst of queued packets; with NO_ENOBUFS an overrun
	// does not turn into a read error (fail-open accepts what the
	// kernel could not deliver).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
	return &conn{f: os.NewFile(uintptr(fd), "nfnetlink_queue")}, nil
}

func (c *conn) Close() error { return c.f.Close() }

func (c *conn) send(b []byte) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	return errors.Join(err, serr)
}

// recv reads one datagram into buf, blocking until one arrives or the
// socket is closed.
func (c *conn) recv(buf []byte) (int, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// bind binds the queue and waits for the kernel's answer. EPERM and EBUSY
// mean another socket holds the queue.
func (c *conn) bind(queue uint16, copyRange, maxLen uint32) error {
	seq := c.seq.Add(1)
	if err := c.send(configMessage(queue, seq, copyRange, maxLen)); err != nil {
		return fmt.Errorf("send queue %d config: %w", queue, err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, err := c.recv(buf)
		if err != nil {
			return fmt.Errorf("read queue %d config answer: %w", queue, err)
		}
		evs, err := parse(buf[:n])
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.ack && e.seq == seq {
				if e.errno != 0 {
					return e.errno
				}
				return nil
			}
		}
	}
}
