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

tag=$$
bench_ns_prefix="zncb-$tag-" # this run's namespaces, named by the driver
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init cluster-bench "network namespaces, VXLAN devices" ip go etcd

echo "cluster-bench: building zonenetd and the driver" >&2
(cd "$repo" && CGO_ENABLED=0 go build -o "$tmp/zonenetd" ./cmd/zonenetd &&
	go build -o "$tmp/clusterbench" ./test/bench/clusterbench)

args=(-tag "$tag" -zonenetd "$tmp/zonenetd" -ttl "$TTL" -peers "$PEERS" -rounds "$ROUNDS")
[[ -n $OUT ]] && args+=(-out "$OUT")
echo "cluster-bench: measuring (TTL $TTL, $PEERS nodes, $ROUNDS rounds)" >&2
rc=0
bench_driver "$tmp/clusterbench" "${args[@]}" || rc=$?
exit "$rc"
