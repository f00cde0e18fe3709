#!/usr/bin/env bash
# Benchmark the overlay dataplane: container -> container TCP throughput and
# round-trip time between two simulated nodes, over a raw veth pair, the
# underlay routed without encapsulation, a VXLAN overlay built by hand with
# ip(8)/bridge(8) (static FDB, learning off), and the same overlay
# programmed by the overlay package. The load generator is the Go driver
# in test/bench/overlaybench (no iperf3 needed).
#
# Everything lives in network namespaces named znob-<pid>-*, which the
# driver creates and removes (and this script removes too if the driver
# dies). The machine's own namespace is never changed. Needs root, ip(8),
# bridge(8) and Go.
#
#   sudo test/bench/overlay-bench.sh                      # 3 rounds x 3 s
#   ROUNDS=5 DURATION=5s PINGS=5000 test/bench/overlay-bench.sh
#   OUT=overlay-bench.txt VERBOSE=1 test/bench/overlay-bench.sh
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3s}
PINGS=${PINGS:-2000}
OUT=${OUT:-}
VERBOSE=${VERBOSE:-0}

tag=$$
bench_ns_prefix="znob-$tag-" # this run's namespaces, named by the driver
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init overlay-bench "network namespaces, VXLAN devices" ip bridge go

echo "overlay-bench: building the driver" >&2
(cd "$repo" && go build -o "$tmp/overlaybench" ./test/bench/overlaybench)

args=(-tag "$tag" -rounds "$ROUNDS" -duration "$DURATION" -pings "$PINGS")
[[ -n $OUT ]] && args+=(-out "$OUT")
[[ $VERBOSE == 1 ]] && args+=(-v)
echo "overlay-bench: measuring (${ROUNDS} rounds x 4 paths x ${DURATION})" >&2
rc=0
bench_driver "$tmp/overlaybench" "${args[@]}" || rc=$?
exit "$rc"
