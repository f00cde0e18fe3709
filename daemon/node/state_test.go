package node

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/zonenet/zonenet/cluster"
)

// TestStateLogsOnce: a condition that persists is logged once, its end
// once.
func TestStateLogsOnce(t *testing.T) {
	var buf bytes.Buffer
	s := newState(slog.New(slog.NewTextHandler(&buf, nil)))
	s.etcd(nil)
	for i := 0; i < 5; i++ {
		s.etcd(errors.New("connection refused"))
	}
	s.etcd(nil)
	s.etcd(nil)
	if n := strings.Count(buf.String(), "etcd unreachable"); n != 1 {
		t.Errorf("%d unreachable lines:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "reachable again"); n != 1 {
		t.Errorf("%d back lines:\n%s", n, buf.String())
	}
}

func TestHealthAndMetrics(t *testing.T) {
	s := newState(slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := s.handler("n1", "v1")
	get := func(path string) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code, w.Body.String()
	}
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "etcd: not contacted yet") {
		t.Errorf("healthz before start: %d %q", code, body)
	}
	s.etcd(nil)
	s.setRegistered(true)
	s.setMTU(1450)
	s.reconciled(2, 3, nil)
	s.setBlocks([]cluster.Block{{Network: "prod", Zone: "fe", Prefix: netip.MustParsePrefix("10.0.1.0/26"), Node: "n1"}},
		map[blockID]cluster.Block{{"prod", netip.MustParsePrefix("10.0.1.0/26")}: {Network: "prod", Zone: "fe", Node: "n1"}},
		map[string]bool{"prod": true})
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	_, m := get("/metrics")
	for _, want := range []string{
		`zonenetd_info{node="n1",version="v1"} 1`, "zonenetd_etcd_reachable 1", "zonenetd_peers 2",
		`zonenetd_blocks{network="prod",zone="fe"} 1`, `zonenetd_cluster_blocks{network="prod",zone="fe"} 1`,
		"zonenetd_overlay_changes_total 3", "zonenetd_overlay_mtu 1450", "# TYPE zonenetd_reconciles_total counter",
	} {
		if !strings.Contains(m, want+"\n") && !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	s.etcd(errors.New("deadline exceeded"))
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "deadline exceeded") {
		t.Errorf("healthz with etcd down: %d %q", code, body)
	}
}
