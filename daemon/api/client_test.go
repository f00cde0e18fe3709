package api

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseAnswer(t *testing.T) {
	cases := []struct {
		raw    string
		status int
		body   string
		err    string
	}{
		{"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}\n", 200, "{}\n", ""},
		{"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}junk", 409, "{}", ""},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 0, "", "transfer-encoding"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", 0, "", "content-length"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2", 0, "", "no end of header"},
		{"SSH-2.0-OpenSSH\r\n\r\n", 0, "", "not an HTTP answer"},
		{"HTTP/1.1 2x0 OK\r\n\r\n", 0, "", "bad status"},
	}
	for _, tc := range cases {
		status, body, err := parseAnswer([]byte(tc.raw))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseAnswer(%q) = %v, want an error with %q", tc.raw, err, tc.err)
			}
			continue
		}
		if err != nil || status != tc.status || string(body) != tc.body {
			t.Errorf("parseAnswer(%q) = %d %q %v", tc.raw, status, body, err)
		}
	}
}

// TestTimeout: a daemon that accepts and never answers costs the caller
// the client's timeout, not more.
func TestTimeout(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c := Client{Socket: sock, Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err = c.ClaimBlock(context.Background(), BlockRequest{Network: "n"})
	var te *TimeoutError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "did not answer within 200ms") {
		t.Fatalf("ClaimBlock against a silent daemon: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestValidate(t *testing.T) {
	ok := BlockRequest{Network: "n", Zone: "z", Subnet: netipPrefix("10.0.1.0/24"), BlockSize: 26}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*BlockRequest){
		"no network":     func(r *BlockRequest) { r.Network = "" },
		"no zone":        func(r *BlockRequest) { r.Zone = "" },
		"host bits":      func(r *BlockRequest) { r.Subnet = netipPrefix("10.0.1.5/24") },
		"no subnet":      func(r *BlockRequest) { r.Subnet = netipPrefix("") },
		"block too big":  func(r *BlockRequest) { r.BlockSize = 24 },
		"block too tiny": func(r *BlockRequest) { r.BlockSize = 31 },
		"foreign full":   func(r *BlockRequest) { r.Full = append(r.Full, netipPrefix("10.0.2.0/26")) },
	} {
		r := ok
		mut(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, r)
		}
	}
}

func netipPrefix(s string) netip.Prefix {
	p, _ := netip.ParsePrefix(s)
	return p
}
