#!/bin/bash
# zonenet under cnitool (libcni, CNI 1.1.0) on namespaces made by `ip netns add`:
# ADD/CHECK/STATUS/DEL/DEL-again, zone choice by CNI_ARGS, DEL after the netns
# is gone, GC of a lease whose container vanished without a DEL, GC removing
# the zone bridges once empty, and conflists at CNI 0.3.0, 0.4.0 and 1.0.0.
E2E_NAME=cnitool
source "$(dirname "$0")/lib.sh"
e2e_init cnitool
need cnitool ip busybox iptables-save
zonenet_binaries

NET=zne2e-cni
zones 10.77.11.0/24 zne2e-cni-fe 10.77.12.0/24 zne2e-cni-be
export NETCONFPATH=$WORK/net.d
export CNI_PATH=$REF_CNI_DIR
[ "$ZN_MODE" = zonenet ] && CNI_PATH=$ZN_BIN:$REF_CNI_DIR
CONF=$NETCONFPATH/10-$NET.conflist
write_conflist "$CONF" $NET 1.1.0

NS_A=zne2e-cni-a NS_B=zne2e-cni-b NS_C=zne2e-cni-c NS_S=zne2e-cni-s NS_V=zne2e-cni-v
ALL_NS=("$NS_A" "$NS_B" "$NS_C" "$NS_S" "$NS_V")

# cnitool names the container after a hash of the netns path.
container_id() { $PY -c 'import hashlib,sys; print("cnitool-" + hashlib.sha512(sys.argv[1].encode()).hexdigest()[:20])' "/run/netns/$1"; }

teardown() {
	local ns p
	for ns in "${ALL_NS[@]}"; do
		[ -e /run/netns/$ns ] || continue
		for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		cnitool del $NET /run/netns/$ns >/dev/null 2>&1 || log "cleanup: DEL $ns failed"
		ip netns del $ns
	done
	# Drop whatever lease a failed run left, and the zone bridges with it.
	[ "$ZN_MODE" = zonenet ] && { cni_gc "$CONF" '[]' >/dev/null || log "cleanup: GC failed"; }
	rm -f /var/lib/cni/results/$NET-cnitool-*-eth0
	return 0
}
for ns in "${ALL_NS[@]}"; do [ -e /run/netns/$ns ] && { warn "removing leftover netns $ns"; ip netns del $ns; }; done
defer teardown

add_ns() { # NS: make the netns with lo up
	ip netns add "$1"
	ip -n "$1" link set lo up
}
add() { # NS [CNI_ARGS]: ADD, print the result's first address
	add_ns "$1"
	local out
	out=$(CNI_ARGS=${2:-} timed "ADD $1" cnitool add $NET /run/netns/"$1") || fail "cnitool add $NET $1 failed: $out"
	json 'd["ips"][0]["address"]' <<<"$out"
}

IP=$(add $NS_A) || fail "ADD $NS_A"
probe a frontend "$IP" ip netns exec $NS_A busybox
IP=$(add $NS_B) || fail "ADD $NS_B"
probe b frontend "$IP" ip netns exec $NS_B busybox
[ "${C_IP[a]}" != "${C_IP[b]}" ] || fail "a and b got the same address ${C_IP[a]}"

ip netns exec $NS_B busybox sh -c "$SERVER_SH" >/dev/null 2>&1 &
defer "kill_pid $!"
disown
tcp_check a b ip netns exec $NS_A busybox
# and back, with a listener in a
ip netns exec $NS_A busybox sh -c "$SERVER_SH" >/dev/null 2>&1 &
defer "kill_pid $!"
disown
tcp_check b a ip netns exec $NS_B busybox

timed "CHECK a" cnitool check $NET /run/netns/$NS_A || fail "cnitool check $NET $NS_A failed"
ok "CHECK a"

if [ "$ZN_MODE" = zonenet ]; then
	timed STATUS cnitool status $NET /run/netns/$NS_A || fail "cnitool status $NET (STATUS verb) failed"
	ok "STATUS"

	IP=$(add $NS_C "ZONE=backend") || fail "ADD $NS_C ZONE=backend"
	probe c backend "$IP" ip netns exec $NS_C busybox
	assert_leases $NET a b c

	# A container that vanished without a DEL: GC must drop its lease.
	IP=$(add $NS_S) || fail "ADD $NS_S"
	probe s frontend "$IP" ip netns exec $NS_S busybox
	ip netns del $NS_S
	valid=$($PY -c 'import json,sys; print(json.dumps([{"containerID": c, "ifname": "eth0"} for c in sys.argv[1:]]))' \
		"$(container_id $NS_A)" "$(container_id $NS_B)" "$(container_id $NS_C)")
	timed "GC keeping a,b,c" cni_gc "$CONF" "$valid" || fail "GC with valid attachments a,b,c failed"
	assert_leases $NET a b c
	ok "GC dropped the stale lease of s (${C_IP[s]}) and kept a, b, c"
	# The runtime's late DEL (also drops libcni's cached result of s).
	timed "DEL s after GC" cnitool del $NET /run/netns/$NS_S || fail "DEL of s after GC failed"
else
	warn "reference plugin: zone, STATUS and GC checks skipped"
fi

timed "DEL a" cnitool del $NET /run/netns/$NS_A || fail "DEL a failed"
timed "DEL a again" cnitool del $NET /run/netns/$NS_A || fail "second DEL of a failed (DEL must be idempotent)"
ok "DEL a twice"
timed "DEL b" cnitool del $NET /run/netns/$NS_B || fail "DEL b failed"
for p in $(ip netns pids $NS_A) $(ip netns pids $NS_B); do kill -9 "$p"; done
ip netns del $NS_A
ip netns del $NS_B
labels=(a b)
if [ "$ZN_MODE" = zonenet ]; then
	# DEL after the runtime already dropped the netns must still release the lease.
	ip netns del $NS_C
	timed "DEL c (netns gone)" cnitool del $NET /run/netns/$NS_C || fail "DEL c with its netns gone failed"
	labels=(a b c s)
fi
assert_clean $NET "${labels[@]}" -- /run/netns/$NS_A /run/netns/$NS_B /run/netns/$NS_C /run/netns/$NS_S

if [ "$ZN_MODE" = zonenet ]; then
	# Every older CNI version the plugin claims: ADD, CHECK (0.4.0+), DEL.
	for v in 0.3.0 0.4.0 1.0.0; do
		write_conflist "$CONF" $NET $v
		add_ns $NS_V
		out=$(timed "ADD v$v" cnitool add $NET /run/netns/$NS_V) || fail "ADD with cniVersion $v failed: $out"
		[ "$(json 'd["cniVersion"]' <<<"$out")" = $v ] || fail "ADD with cniVersion $v returned: $out"
		probe v$v frontend "$(json 'd["ips"][0]["address"]' <<<"$out")" ip netns exec $NS_V busybox
		if [ $v != 0.3.0 ]; then
			cnitool check $NET /run/netns/$NS_V || fail "CHECK with cniVersion $v failed"
		fi
		cnitool del $NET /run/netns/$NS_V || fail "DEL with cniVersion $v failed"
		ip netns del $NS_V
		assert_clean $NET v$v -- /run/netns/$NS_V
	done
	ok "CNI versions 0.3.0 0.4.0 1.0.0 1.1.0 all work"
	write_conflist "$CONF" $NET 1.1.0

	# libcni's GC: DEL for cached attachments, then the plugin's GC with none valid.
	timed "cnitool gc" cnitool gc $NET /run/netns/$NS_A || fail "cnitool gc $NET failed"
	for br in $FE_BR $BE_BR; do
		! ip link show $br >/dev/null 2>&1 || fail "GC left zone bridge $br with no attachment"
	done
	ok "GC removed both zone bridges"
fi
