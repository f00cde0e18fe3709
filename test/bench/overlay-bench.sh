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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [[ $(id -u) -ne 0 ]]; then
	echo "overlay-bench: needs root (network namespaces, VXLAN devices)" >&2
	exit 1
fi
for tool in ip bridge go; do
	command -v "$tool" >/dev/null || { echo "overlay-bench: $tool not found" >&2; exit 1; }
done

tag=$$
tmp=$(mktemp -d /tmp/znovbench.XXXXXX)
driver_pid=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
		kill "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
	# Only this run's namespaces: the tag is this script's PID.
	for ns in $(ip netns list | awk '{print $1}' | grep "^znob-$tag-" || true); do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "overlay-bench: building the driver" >&2
(cd "$repo" && go build -o "$tmp/overlaybench" ./test/bench/overlaybench)

args=(-tag "$tag" -rounds "$ROUNDS" -duration "$DURATION" -pings "$PINGS")
[[ -n $OUT ]] && args+=(-out "$OUT")
[[ $VERBOSE == 1 ]] && args+=(-v)
echo "overlay-bench: measuring (${ROUNDS} rounds x 4 paths x ${DURATION})" >&2
"$tmp/overlaybench" "${args[@]}" &
driver_pid=$!
wait "$driver_pid"
driver_pid=
