package netns

import (
	"net"
	"time"
)

// ListenTCP opens a TCP listener inside the namespace at path. The socket
// keeps belonging to that namespace after Do returns, so it can be served
// from any goroutine.
func ListenTCP(path, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(path, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// ListenUDP opens a UDP socket inside the namespace at path.
func ListenUDP(path, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := Do(path, func() error {
		var err error
		c, err = net.ListenPacket("udp", addr)
		return err
	})
	return c, err
}

// Dial connects from inside the namespace at path. network is "tcp" or
// "udp"; the connect completes (or fails) before Dial returns.
func Dial(path, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := Do(path, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}
