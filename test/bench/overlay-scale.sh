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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [[ $(id -u) -ne 0 ]]; then
	echo "overlay-scale: needs root (network namespaces, VXLAN devices)" >&2
	exit 1
fi
for tool in ip go; do
	command -v "$tool" >/dev/null || { echo "overlay-scale: $tool not found" >&2; exit 1; }
done

tag=$$
tmp=$(mktemp -d /tmp/znovscale.XXXXXX)
driver_pid=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
		kill "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
	# Only this run's namespaces: the tag is this script's PID.
	for ns in $(ip netns list | awk '{print $1}' | grep "^znos-$tag-" || true); do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "overlay-scale: building the driver" >&2
(cd "$repo" && go build -o "$tmp/overlayscale" ./test/bench/overlayscale)

args=(-tag "$tag" -peers "$PEERS" -rounds "$ROUNDS")
[[ -n $OUT ]] && args+=(-out "$OUT")
[[ $VERBOSE == 1 ]] && args+=(-v)
echo "overlay-scale: measuring (peers ${PEERS}, ${ROUNDS} rounds each)" >&2
"$tmp/overlayscale" "${args[@]}" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_pid=
exit "$rc"
