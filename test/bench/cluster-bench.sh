#!/usr/bin/env bash
# Benchmark how fast zonenetd follows the cluster, with real parts: etcd
# with mutual TLS 1.3 in an underlay namespace and, per node, a namespace
# plugged into it running the real zonenetd. Two parts:
#   - three real nodes: the third one's zonenetd start → programmed on
#     both peers (FDB entry, neighbour, block route, peer-set member, read
#     from their kernels), and its death (SIGKILL, netns deleted) →
#     dropped by both, ROUNDS times;
#   - PEERS nodes: one real node and PEERS-1 fake registrations written
#     into etcd with the cluster package (underlay address, VTEP MAC and a
#     block each): all written at once → all programmed, zonenetd cold
#     start → all programmed, one lease revoked → dropped, one lease left
#     to expire → dropped, and zonenetd's VmRSS/VmHWM.
# Prints a table (figure, value, target); drops must happen within TTL.
# The driver is test/bench/clusterbench.
#
# Namespaces are named zncb-<pid>-*; the driver removes them and ends its
# processes (etcd, zonenetd, the fake-node writer) by PID, and this script
# removes the namespaces too if the driver dies. Nothing is added to the
# machine's own namespace. Needs root, ip(8), etcd (make setup) and Go.
#
#   sudo test/bench/cluster-bench.sh
#   TTL=10s PEERS=100 ROUNDS=5 OUT=cluster-bench.txt test/bench/cluster-bench.sh
#
# Exits 3 when a figure misses its target.
set -euo pipefail

TTL=${TTL:-5s}
PEERS=${PEERS:-50}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [[ $(id -u) -ne 0 ]]; then
	echo "cluster-bench: needs root (network namespaces, VXLAN devices)" >&2
	exit 1
fi
for tool in ip go etcd; do
	command -v "$tool" >/dev/null || { echo "cluster-bench: $tool not found (make setup installs etcd)" >&2; exit 1; }
done

tag=$$
tmp=$(mktemp -d /tmp/znclbench.XXXXXX)
driver_pid=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
		kill "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
	# Only this run's namespaces: the tag is this script's PID.
	for ns in $(ip netns list | awk '{print $1}' | grep "^zncb-$tag-" || true); do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "cluster-bench: building zonenetd and the driver" >&2
(cd "$repo" && CGO_ENABLED=0 go build -o "$tmp/zonenetd" ./cmd/zonenetd &&
	go build -o "$tmp/clusterbench" ./test/bench/clusterbench)

args=(-tag "$tag" -zonenetd "$tmp/zonenetd" -ttl "$TTL" -peers "$PEERS" -rounds "$ROUNDS")
[[ -n $OUT ]] && args+=(-out "$OUT")
echo "cluster-bench: measuring (TTL $TTL, $PEERS nodes, $ROUNDS rounds)" >&2
"$tmp/clusterbench" "${args[@]}" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_pid=
exit "$rc"
