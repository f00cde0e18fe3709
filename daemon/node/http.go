package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The metrics are written in the Prometheus text format by hand: a dozen
// gauges and counters do not justify the client library and its
// dependencies in the daemon.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// handler serves /healthz and /metrics.
func (s *state) handler(node, version string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := s.healthy()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy\n%s\n", strings.Join(why, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", metricsContentType)
		s.writeMetrics(w, node, version)
	})
	return mux
}

func (s *state) writeMetrics(w io.Writer, node, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := metricWriter{w: w}
	m.gauge("zonenetd_info", "zonenetd's node name and version (always 1).", 1, "node", node, "version", version)
	m.gauge("zonenetd_etcd_reachable", "1 if the last contact with etcd succeeded.", b2f(s.etcdUp), "")
	m.gauge("zonenetd_registered", "1 if this node's record is in the cluster's node list.", b2f(s.registered), "")
	m.gauge("zonenetd_dataplane_ok", "1 if the VXLAN device and the VXLAN guard are in place.", b2f(s.dataplaneErr == ""), "")
	m.gauge("zonenetd_overlay_mtu", "MTU of the VXLAN device: the largest container MTU that crosses nodes.", float64(s.overlayMTU), "")
	m.gauge("zonenetd_peers", "Remote nodes programmed into the overlay at the last reconcile.", float64(s.peers), "")
	m.header("zonenetd_blocks", "gauge", "Address blocks this node owns, per network and zone.")
	for _, k := range sortedZones(ownCounts(s)) {
		m.sample("zonenetd_blocks", float64(ownCounts(s)[k]), "network", k.network, "zone", k.zone)
	}
	m.header("zonenetd_cluster_blocks", "gauge", "Address blocks owned by any node (live or not), per network and zone.")
	for _, k := range sortedZones(s.clusterBlocks) {
		m.sample("zonenetd_cluster_blocks", float64(s.clusterBlocks[k]), "network", k.network, "zone", k.zone)
	}
	last := 0.0
	if !s.lastReconcile.IsZero() {
		last = float64(s.lastReconcile.UnixMilli()) / 1000
	}
	m.gauge("zonenetd_last_reconcile_timestamp_seconds", "When the overlay was last compared with the cluster (Unix time).", last, "")
	m.gauge("zonenetd_last_reconcile_success", "1 if the last reconcile programmed every peer.", b2f(s.reconciles > 0 && s.lastReconcileErr == ""), "")
	m.counter("zonenetd_reconciles_total", "Reconciles of the overlay.", s.reconciles)
	m.counter("zonenetd_reconcile_errors_total", "Reconciles that could not program every peer.", s.reconcileErrors)
	m.counter("zonenetd_overlay_changes_total", "Netlink writes made by reconciles (0 while nothing changes).", s.changes)
	m.counter("zonenetd_reclaimed_blocks_total", "Blocks of dead nodes this node freed.", s.reclaimed)
	m.header("zonenetd_policy_revision", "gauge", "etcd revision of the cluster's policy document this node runs, per network.")
	for _, n := range sortedKeys(s.policyRev) {
		m.sample("zonenetd_policy_revision", float64(s.policyRev[n]), "network", n)
	}
	m.counter("zonenetd_policy_installs_total", "Policies from etcd installed in the filter table.", s.policyInstalls)
	m.counter("zonenetd_policy_install_errors_total", "Installs of a policy from etcd that failed.", s.policyErrors)
	m.counter("zonenetd_policy_refused_total", "Policy documents in etcd this node refused (invalid, or no policy key).", s.policyRefused)
}

func ownCounts(s *state) map[zoneKey]int {
	out := map[zoneKey]int{}
	for _, b := range s.ownBlocks {
		out[zoneKey{b.Network, b.Zone}]++
	}
	return out
}

func sortedZones(m map[zoneKey]int) []zoneKey {
	return slices.SortedFunc(maps.Keys(m), func(a, b zoneKey) int {
		if c := strings.Compare(a.network, b.network); c != 0 {
			return c
		}
		return strings.Compare(a.zone, b.zone)
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricWriter writes samples in the text exposition format.
type metricWriter struct{ w io.Writer }

func (m metricWriter) header(name, typ, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (m metricWriter) gauge(name, help string, v float64, labels ...string) {
	m.header(name, "gauge", help)
	m.sample(name, v, labels...)
}

func (m metricWriter) counter(name, help string, v uint64) {
	m.header(name, "counter", help)
	fmt.Fprintf(m.w, "%s %d\n", name, v)
}

// sample writes one line; labels are name, value pairs (a lone "" means
// none).
func (m metricWriter) sample(name string, v float64, labels ...string) {
	var ls []string
	for i := 0; i+1 < len(labels); i += 2 {
		ls = append(ls, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	if len(ls) > 0 {
		name += "{" + strings.Join(ls, ",") + "}"
	}
	fmt.Fprintf(m.w, "%s %g\n", name, v)
}

// serveHTTP listens on addr (with tlsCfg unless nil) and serves h until
// ctx ends. The listener is opened before it returns, so a busy port is a
// start-up error, not a log line. The server's own complaints (a client
// refused in the TLS handshake, say) go to log at debug level: anyone who
// can reach the port can cause them.
func serveHTTP(ctx context.Context, addr string, tlsCfg *tls.Config, h http.Handler, log *slog.Logger) (<-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for health and metrics: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	return done, nil
}
