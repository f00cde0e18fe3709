#!/usr/bin/env bash
# Benchmark zonenet's ACL dataplane:
#  1. rule install: `zonenetctl policy apply` of N filler rules against one
#     `iptables -A` exec per rule (the way a script looping over a list
#     installs them), each into a fresh namespace;
#  2. per-packet cost: TCP throughput and new connections per second from a
#     frontend container to a backend one, through the host namespace,
#     under a policy with no filler rules and under one with the most.
#
# Everything happens in network namespaces this script creates: one per
# install, and for (2) one that plays the host with two containers attached
# through the real zonenet binary. The machine's own namespace is never
# touched. Needs root, ip(8), iptables and Go.
#
#   sudo test/bench/acl-bench.sh                                   # full run (~5-10 min)
#   RULES=100,1000 REPEAT=1 ROUNDS=1 DUR=2s test/bench/acl-bench.sh  # smoke, ~1 min
#   OUT=acl.txt test/bench/acl-bench.sh                            # also save the table
#
# Knobs: RULES (filler rule counts, 100,1000,10000; the largest is used for
# the per-packet step), SHAPE (rules: one rule per source address; list: one
# rule whose source lists them all), REPEAT (execs of our apply per count,
# each in a fresh namespace; 3), ROUNDS (per-packet rounds, each measuring
# both policies; 3), DUR (length of each stream and connect run; 4s), CONC
# (parallel connect loops; 4), SKIP_INSTALL=1 / SKIP_PACKET=1.
set -euo pipefail

RULES=${RULES:-100,1000,10000}
SHAPE=${SHAPE:-rules}
REPEAT=${REPEAT:-3}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-4s}
CONC=${CONC:-4}
OUT=${OUT:-}
PORT=8080

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init acl-bench "network namespaces, bridges, iptables" ip iptables iptables-save go
prefix="znab-$$"
failed=0

log() { echo "acl-bench: $*" >&2; }

mkns() {
	ip netns add "$1"
	bench_ns+=("$1")
	ip netns exec "$1" ip link set lo up
}

delns() {
	ip netns del "$1"
	local keep=()
	for ns in "${bench_ns[@]}"; do
		[[ $ns == "$1" ]] || keep+=("$ns")
	done
	bench_ns=("${keep[@]}")
}

# --- build -------------------------------------------------------------
mkdir -p "$tmp/bin"
log "building aclbench, zonenet, zonenetctl"
(cd "$repo" && go build -o "$tmp/bin/aclbench" ./test/bench/aclbench)
for c in zonenet zonenetctl; do
	# Built as `make build` does: static, stripped.
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/$c" "./cmd/$c")
done
bench="$tmp/bin/aclbench"
outer="/proc/$$/ns/net"
res="$tmp/results.jsonl"
: >"$res"

"$bench" gen -dir "$tmp" -tag "$$" -rules "$RULES" -shape "$SHAPE" -port "$PORT"
counts=${RULES//,/ }
most=$(tr ' ' '\n' <<<"$counts" | sort -n | tail -1)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. rule install -----------------------------------------------------
if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
	for n in $counts; do
		for ((i = 1; i <= REPEAT; i++)); do
			log "install $n rules: ours, run $i/$REPEAT"
			mkns "$prefix-inst"
			ip netns exec "$prefix-inst" "$bench" install -method ours -rules "$n" -shape "$SHAPE" \
				-dir "$tmp" -zonenetctl "$tmp/bin/zonenetctl" -outer-netns "$outer" >>"$res" ||
				{ log "install $n rules (ours) failed"; failed=1; }
			delns "$prefix-inst"
		done
		log "install $n rules: per-rule baseline"
		mkns "$prefix-inst"
		ip netns exec "$prefix-inst" "$bench" install -method per-rule -rules "$n" -shape "$SHAPE" \
			-dir "$tmp" -outer-netns "$outer" >>"$res" ||
			{ log "install $n rules (per-rule) failed"; failed=1; }
		delns "$prefix-inst"
	done
fi

# --- 2. per-packet cost ----------------------------------------------------
if [[ ${SKIP_PACKET:-0} != 1 ]]; then
	host="$prefix-host" fe="$prefix-fe" be="$prefix-be"
	mkns "$host"
	mkns "$fe"
	mkns "$be"
	# Every exchange is a fresh connection; the client closes first, so
	# its TIME_WAIT ports must be reusable. Both sysctls are per namespace.
	ip netns exec "$fe" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
	attach() { # NETNS ZONE: ADD through the real plugin, run in the host namespace
		ip netns exec "$host" env CNI_COMMAND=ADD CNI_CONTAINERID="$1" CNI_NETNS="/run/netns/$1" \
			CNI_IFNAME=eth0 CNI_PATH="$tmp/bin" CNI_ARGS="ZONE=$2" "$tmp/bin/zonenet" \
			<"$tmp/net.json" >"$tmp/$2.result.json"
	}
	log "attaching a frontend and a backend container through zonenet"
	attach "$fe" frontend
	attach "$be" backend
	be_ip=$(ip -n "$be" -4 -o addr show dev eth0 | awk '{split($4, a, "/"); print a[1]; exit}')
	[[ -n $be_ip ]] || { log "backend container has no IPv4 address"; exit 1; }

	log "per-packet: $ROUNDS rounds of stream + connect loops ($DUR each), 0 vs $most filler rules"
	ip netns exec "$host" "$bench" packet -fe "$fe" -be "$be" -to "$be_ip" -port "$PORT" \
		-dir "$tmp" -zonenetctl "$tmp/bin/zonenetctl" -rules "$most" -shape "$SHAPE" \
		-rounds "$ROUNDS" -dur "$DUR" -conc "$CONC" -outer-netns "$outer" >>"$res" &
	driver_pid=$!
	wait "$driver_pid" || { log "per-packet step failed"; failed=1; }
	driver_pid=
fi

echo
"$bench" table -in "$res" -iptables "$(iptables -V | sed 's/^iptables //')" \
	-load "$load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end" \
	-setup "$ROUNDS rounds of $DUR each way per policy; connect loops: $CONC in parallel; the host namespace routes between the zones' bridges (FORWARD)" \
	${OUT:+-out "$OUT"}
exit "$failed"
