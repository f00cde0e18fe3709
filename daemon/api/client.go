package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxAnswer bounds what the client reads: answers are a few hundred bytes.
const maxAnswer = 1 << 20

// Client calls zonenetd over its unix socket. A call dials, sends one
// request and reads the answer up to the server's close: nothing is kept
// between calls, which suits a process that lives for one CNI verb.
type Client struct {
	Socket  string
	Timeout time.Duration // per call; DefaultTimeout when zero
}

// NotRunningError means nothing accepts connections on the socket.
type NotRunningError struct {
	Socket string
	Err    error
}

func (e *NotRunningError) Error() string {
	switch {
	case errors.Is(e.Err, syscall.ENOENT):
		return fmt.Sprintf("zonenetd is not running (no socket at %s): start zonenetd on this node", e.Socket)
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("zonenetd is not running (nothing accepts connections on %s): start zonenetd on this node", e.Socket)
	}
	return fmt.Sprintf("cannot reach zonenetd at %s (%v): start zonenetd on this node, or check the socket's owner and mode", e.Socket, e.Err)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// TimeoutError means the daemon did not answer in time.
type TimeoutError struct {
	Socket string
	After  time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("zonenetd at %s did not answer within %s", e.Socket, e.After)
}

// ClaimBlock asks for a block of req.Subnet for the zone.
func (c Client) ClaimBlock(ctx context.Context, req BlockRequest) (BlockResponse, error) {
	var out BlockResponse
	body, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	if err := c.call(ctx, "POST", PathBlocks, body, &out); err != nil {
		return out, err
	}
	if !out.Block.IsValid() {
		return out, fmt.Errorf("zonenetd at %s answered without a block", c.Socket)
	}
	return out, nil
}

// Health asks whether the daemon is serving.
func (c Client) Health(ctx context.Context) (Health, error) {
	var out Health
	err := c.call(ctx, "GET", PathHealth, nil, &out)
	return out, err
}

func (c Client) call(ctx context.Context, method, path string, body []byte, out any) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		if ctx.Err() != nil {
			return &TimeoutError{Socket: c.Socket, After: timeout}
		}
		return &NotRunningError{Socket: c.Socket, Err: err}
	}
	defer conn.Close()
	// A deadline in the past unblocks the read when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.0\r\nHost: zonenetd\r\n", method, path)
	if body != nil {
		fmt.Fprintf(&req, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return c.ioErr(ctx, timeout, "send to", err)
	}
	// HTTP/1.0 without keep-alive: the server closes after its answer,
	// which it neither chunks nor keeps open.
	raw, err := io.ReadAll(io.LimitReader(conn, maxAnswer+1))
	if err != nil {
		return c.ioErr(ctx, timeout, "read the answer of", err)
	}
	if len(raw) > maxAnswer {
		return fmt.Errorf("answer of zonenetd at %s is larger than %d bytes", c.Socket, maxAnswer)
	}
	status, payload, err := parseAnswer(raw)
	if err != nil {
		return fmt.Errorf("answer of zonenetd at %s: %w", c.Socket, err)
	}
	if status != 200 {
		p := &Problem{Status: status}
		if json.Unmarshal(payload, p) != nil || p.Message == "" {
			p.Code, p.Message = CodeInternal, fmt.Sprintf("zonenetd answered %d: %s", status, bytes.TrimSpace(payload))
		}
		return p
	}
	if err := json.Unmarshal(payload, out); err != nil {
		return fmt.Errorf("answer of zonenetd at %s: %w", c.Socket, err)
	}
	return nil
}

func (c Client) ioErr(ctx context.Context, timeout time.Duration, what string, err error) error {
	if ctx.Err() != nil {
		return &TimeoutError{Socket: c.Socket, After: timeout}
	}
	return fmt.Errorf("%s zonenetd at %s: %w", what, c.Socket, err)
}

// parseAnswer splits an HTTP/1.x answer into its status and body.
func parseAnswer(raw []byte) (status int, body []byte, err error) {
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		return 0, nil, errors.New("no end of header (connection closed early?)")
	}
	lines := strings.Split(string(head), "\r\n")
	proto, rest, _ := strings.Cut(lines[0], " ")
	code, _, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") || len(code) != 3 {
		return 0, nil, fmt.Errorf("not an HTTP answer: %q", lines[0])
	}
	if status, err = strconv.Atoi(code); err != nil {
		return 0, nil, fmt.Errorf("bad status in %q", lines[0])
	}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "transfer-encoding":
			if !strings.EqualFold(v, "identity") {
				return 0, nil, fmt.Errorf("transfer-encoding %q on an HTTP/1.0 answer", v)
			}
		case "content-length":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > len(body) {
				return 0, nil, fmt.Errorf("content-length %q with %d bytes of body", v, len(body))
			}
			body = body[:n]
		}
	}
	return status, body, nil
}
