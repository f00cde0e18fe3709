#!/bin/bash
# zonenet under containerd's own client, `ctr run --cni` (go-cni/libcni).
#
# ctr knows no config flag: it reads conflists from /etc/cni/net.d and plugins
# from Debian's /usr/lib/cni. The script therefore runs in a private mount
# namespace where an overlay over /etc holds only our conflist and an overlay
# over /usr/lib/cni adds zonenet; the host's /etc is never written. containerd
# runs inside that namespace too, with its own root, state and socket.
# ctr calls DEL only for foreground runs, so both containers run in the
# foreground (as background jobs of this script) and are stopped with SIGKILL
# (busybox as PID 1 ignores SIGTERM); ctr then deletes the task and calls DEL.
E2E_NAME=ctr
if [ -z "${ZNE2E_PRIVATE_MOUNTS:-}" ]; then
	exec unshare --mount --propagation slave env ZNE2E_PRIVATE_MOUNTS=1 bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
e2e_init ctr
need containerd ctr runc busybox iptables-save
need_images busybox.tar
zonenet_binaries

NET=zne2e-ctr
NS=zne2e
zones 10.77.21.0/24 zne2e-ctr-fe 10.77.22.0/24 zne2e-ctr-be

# ---- private /etc/cni/net.d and plugin dir
mkdir -p "$WORK"/ovl/{etc-up,etc-work,cni-up,cni-work}
mount -t overlay zne2e-etc -o "lowerdir=/etc,upperdir=$WORK/ovl/etc-up,workdir=$WORK/ovl/etc-work" /etc
defer "umount /etc"
mkdir -p /etc/cni/net.d
mount -t tmpfs -o size=1m,mode=0755 zne2e-netd /etc/cni/net.d
defer "umount /etc/cni/net.d"
write_conflist /etc/cni/net.d/10-$NET.conflist $NET 1.0.0
if [ "$ZN_MODE" = zonenet ]; then
	cp "$ZN_BIN/zonenet" "$WORK/ovl/cni-up/zonenet"
	mount -t overlay zne2e-cni -o "lowerdir=$REF_CNI_DIR,upperdir=$WORK/ovl/cni-up,workdir=$WORK/ovl/cni-work" $REF_CNI_DIR
	defer "umount $REF_CNI_DIR"
fi

# ---- containerd
CD=$WORK/containerd
SOCK=$CD/containerd.sock
mkdir -p "$CD"
cat >"$CD/config.toml" <<TOML
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
TOML
# Own session: a Ctrl-C or timeout signals our process group, and containerd
# must outlive it so the cleanup can stop the pods through it.
setsid containerd --config "$CD/config.toml" >"$CD/containerd.log" 2>&1 &
CTRD_PID=$!
log "containerd pid $CTRD_PID"
defer stop_containerd
CTR=(ctr --address "$SOCK" --namespace "$NS")

stop_containerd() { stop_containerd_at $CTRD_PID "$SOCK"; }
on_failure() {
	log "containerd log (errors, tail):"
	grep -Ei 'level=(error|warning)' "$CD/containerd.log" | grep -v devmapper | tail -15 >&2 || true
	local f
	for f in "$WORK"/run-*.log; do [ -s "$f" ] && { log "$f:"; cat "$f" >&2; }; done
	return 0
}

t0=$(now_ms)
for _ in $(seq 100); do
	[ -S "$SOCK" ] && timeout 2 "${CTR[@]}" version >/dev/null 2>&1 && break
	kill -0 $CTRD_PID 2>/dev/null || fail "containerd exited: $(tail -5 "$CD/containerd.log")"
	sleep 0.1
done
"${CTR[@]}" version >/dev/null || fail "containerd did not come up"
log "time: containerd up $(($(now_ms) - t0)) ms"
timed "image import" "${CTR[@]}" images import "$E2E_IMAGES/busybox.tar" >/dev/null

# ---- containers
declare -A RUN_PID=()
teardown() {
	local c p
	for c in "${!RUN_PID[@]}"; do
		"${CTR[@]}" task kill -s KILL zne2e-ctr-$c >/dev/null 2>&1
	done
	for c in "${!RUN_PID[@]}"; do
		p=${RUN_PID[$c]}
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill_pid "$p" "ctr run $c"
		"${CTR[@]}" task delete -f zne2e-ctr-$c >/dev/null 2>&1
		"${CTR[@]}" container delete zne2e-ctr-$c >/dev/null 2>&1
		rm -f "$(cache_file "$c")"
	done
	[ "$ZN_MODE" = zonenet ] && { cni_gc /etc/cni/net.d/10-$NET.conflist '[]' >/dev/null || log "cleanup: GC failed"; }
	return 0
}
defer teardown

# libcni caches the result of each ADD until its DEL; ctr reports nothing else.
cache_file() { echo "/var/lib/cni/results/$NET-$NS-zne2e-ctr-$1-eth0"; }

run_fg() { # LABEL COMMAND: `ctr run --cni` in the foreground, as a background job
	local c=$1
	rm -f "$(cache_file "$c")"
	# Own session, like containerd: on Ctrl-C it must live on to call DEL.
	setsid "${CTR[@]}" run --rm --cni $BUSYBOX_REF zne2e-ctr-$c sh -c "$2" </dev/null >"$WORK/run-$c.log" 2>&1 &
	RUN_PID[$c]=$!
	disown
	local t0
	t0=$(now_ms)
	for _ in $(seq 150); do
		"${CTR[@]}" task ls 2>/dev/null | grep -q "^zne2e-ctr-$c .*RUNNING" && break
		kill -0 "${RUN_PID[$c]}" 2>/dev/null || fail "ctr run $c exited: $(cat "$WORK/run-$c.log")"
		sleep 0.1
	done
	"${CTR[@]}" task ls | grep -q "^zne2e-ctr-$c .*RUNNING" || fail "task $c not running after 15 s"
	log "time: ctr run --cni $c until RUNNING $(($(now_ms) - t0)) ms"
	[ -s "$(cache_file "$c")" ] || fail "no libcni result cache $(cache_file "$c") for $c"
}

cexec() { # LABEL busybox-applet ARGS...
	local c=$1
	shift
	"${CTR[@]}" task exec --exec-id "p$RANDOM$RANDOM" zne2e-ctr-$c busybox "$@"
}

run_fg srv "$SERVER_SH"
run_fg cli "exec sleep 600"
for c in srv cli; do
	probe $c frontend "$(json 'd["result"]["ips"][0]["address"]' <"$(cache_file $c)")" cexec $c
done
[ "${C_IP[srv]}" != "${C_IP[cli]}" ] || fail "srv and cli got the same address"
assert_leases $NET srv cli
tcp_check cli srv cexec cli

# ---- removal through ctr: SIGKILL the tasks; the foreground ctr runs delete them and call DEL
t0=$(now_ms)
for c in srv cli; do "${CTR[@]}" task kill -s KILL zne2e-ctr-$c; done
for c in srv cli; do
	for _ in $(seq 150); do kill -0 "${RUN_PID[$c]}" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "${RUN_PID[$c]}" 2>/dev/null || fail "ctr run $c still running 15 s after its task was killed"
	unset "RUN_PID[$c]"
	[ ! -e "$(cache_file $c)" ] || fail "ctr never called DEL for $c: $(cache_file $c) still there"
done
log "time: kill + ctr DEL of both $(($(now_ms) - t0)) ms"
[ -z "$("${CTR[@]}" containers ls -q)" ] || fail "containers left: $("${CTR[@]}" containers ls -q)"
assert_clean $NET srv cli
