#!/bin/bash
# zonenet under rootful podman with its CNI backend: a hand-written conflist
# of type zonenet in the network config dir, the plugin found through
# cni_plugin_dirs. Podman gets its own containers.conf and storage under the
# work dir. Host constraints: no systemd (cgroupfs, file events), no crun
# (runc), no CAP_SYS_RESOURCE (small default ulimits). busybox as PID 1
# ignores SIGTERM, so containers are removed with `rm -f -t 0`.
E2E_NAME=podman
source "$(dirname "$0")/lib.sh"
e2e_init podman
need podman runc conmon busybox iptables-save
need_images busybox.tar
zonenet_binaries

NET=zne2e-pod
zones 10.77.41.0/24 zne2e-pod-fe 10.77.42.0/24 zne2e-pod-be

P=$WORK/podman
mkdir -p "$P"/{cni,tmp,runroot,graphroot}
plugin_dirs="\"$REF_CNI_DIR\""
[ "$ZN_MODE" = zonenet ] && plugin_dirs="\"$ZN_BIN\", $plugin_dirs"
cat >"$P/containers.conf" <<TOML
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
log_driver = "k8s-file"
[network]
network_backend = "cni"
cni_plugin_dirs = [$plugin_dirs]
network_config_dir = "$P/cni"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$P/events.log"
runtime = "runc"
tmp_dir = "$P/tmp"
TOML
cat >"$P/storage.conf" <<TOML
[storage]
driver = "overlay"
runroot = "$P/runroot"
graphroot = "$P/graphroot"
TOML
export CONTAINERS_CONF=$P/containers.conf CONTAINERS_STORAGE_CONF=$P/storage.conf
write_conflist "$P/cni/$NET.conflist" $NET 1.0.0

declare -A RUNNING=()
teardown() {
	local c
	for c in "${!RUNNING[@]}"; do podman rm -f -t 0 zne2e-pod-$c >/dev/null 2>&1; done
	[ "$ZN_MODE" = zonenet ] && { cni_gc "$P/cni/$NET.conflist" '[]' >/dev/null || log "cleanup: GC failed"; }
	podman rmi -a -f >/dev/null 2>&1
	return 0
}
defer teardown

timed "podman load" podman load -q -i "$E2E_IMAGES/busybox.tar" >/dev/null
podman network ls --format '{{.Name}}' | grep -qx $NET || fail "podman does not list network $NET: $(podman network ls)"

declare -A SANDBOX=()
run() { # LABEL COMMAND
	local c=$1 t0 info
	t0=$(now_ms)
	RUNNING[$c]=1
	podman run -d --name zne2e-pod-$c --network $NET $BUSYBOX_REF sh -c "$2" >/dev/null 2>"$WORK/run-$c.err" ||
		fail "podman run $c failed: $(cat "$WORK/run-$c.err")"
	log "time: podman run -d $c $(($(now_ms) - t0)) ms"
	info=$(podman inspect zne2e-pod-$c) || fail "podman inspect $c failed"
	REPORTED=$(json "d[0]['NetworkSettings']['Networks']['$NET']['IPAddress']" <<<"$info")
	SANDBOX[$c]=$(json "d[0]['NetworkSettings']['SandboxKey']" <<<"$info")
	[ -e "${SANDBOX[$c]}" ] || fail "$c: netns '${SANDBOX[$c]}' does not exist"
}
pexec() { # LABEL busybox-applet ARGS...
	local c=$1
	shift
	podman exec zne2e-pod-$c busybox "$@"
}

run srv "$SERVER_SH"
probe srv frontend "$REPORTED" pexec srv
run cli "exec sleep 600"
probe cli frontend "$REPORTED" pexec cli
[ "${C_IP[srv]}" != "${C_IP[cli]}" ] || fail "srv and cli got the same address"
assert_leases $NET srv cli
tcp_check cli srv pexec cli

t0=$(now_ms)
podman rm -f -t 0 zne2e-pod-srv zne2e-pod-cli >/dev/null || fail "podman rm failed"
RUNNING=()
log "time: podman rm -f x2 $(($(now_ms) - t0)) ms"
[ -z "$(podman ps -aq)" ] || fail "containers left: $(podman ps -a)"
assert_clean $NET srv cli -- "${SANDBOX[srv]}" "${SANDBOX[cli]}"
