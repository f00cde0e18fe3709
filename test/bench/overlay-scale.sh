#!/usr/bin/env bash
# Benchmark the overlay package at scale: in a fresh namespace playing a
# node (an uplink holding the underlay address, the VXLAN device Ensure
# makes), time overlay.Reconcile against N fake peers (own underlay IPv4
# in 172.16.0.0/12, VTEP MAC, two /26 blocks each):
#   - from an empty device,
#   - again with nothing changed (no write may happen),
#   - with one peer's MAC changed, one removed, one added;
# and check after each step the changes it wrote and, read back from the
# kernel with netlink, every FDB entry, neighbour, route and peer-set
# member. Prints a table (figure, value, target, ok/FAIL) and the driver's
# peak RSS. The driver is test/bench/overlayscale.
#
# Every round runs in its own namespace named znos-<pid>-*, which the
# driver removes (and this script too if the driver dies). The machine's
# own namespace is never changed. Needs root, ip(8) and Go.
#
#   sudo test/bench/overlay-scale.sh                  # 1,000 and 50 peers, 5 rounds
#   PEERS=5000,1000 ROUNDS=3 test/bench/overlay-scale.sh
#   OUT=overlay-scale.txt VERBOSE=1 test/bench/overlay-scale.sh
#
# Exits 3 when a figure misses its target.
set -euo pipefail

PEERS=${PEERS:-1000,50}
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-}
VERBOSE=${VERBOSE:-0}

tag=$$
bench_ns_prefix="znos-$tag-" # this run's namespaces, named by the driver
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init overlay-scale "network namespaces, VXLAN devices" ip go

echo "overlay-scale: building the driver" >&2
(cd "$repo" && go build -o "$tmp/overlayscale" ./test/bench/overlayscale)

args=(-tag "$tag" -peers "$PEERS" -rounds "$ROUNDS")
[[ -n $OUT ]] && args+=(-out "$OUT")
[[ $VERBOSE == 1 ]] && args+=(-v)
echo "overlay-scale: measuring (peers ${PEERS}, ${ROUNDS} rounds each)" >&2
rc=0
bench_driver "$tmp/overlayscale" "${args[@]}" || rc=$?
exit "$rc"
