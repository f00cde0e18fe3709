#!/bin/bash
# zonenet on the Kubernetes node path: containerd's CRI plugin driven by crictl.
# Pods a and b live in Kubernetes namespace "default" (frontend zone), pod c in
# "payments", which namespaceZones maps to the backend zone. The CRI plugin
# has a single bin_dir, so it gets a dir of symlinks: reference plugins (it
# needs loopback) plus zonenet. CRI calls DEL twice per pod: at stopp with
# the netns and at rmp without one.
# This host's root lacks CAP_SYS_RESOURCE, so the pause container would die
# setting oom_score_adj -998: restrict_oom_score_adj = true.
E2E_NAME=cri
source "$(dirname "$0")/lib.sh"
e2e_init cri
need containerd ctr runc crictl busybox iptables-save
need_images busybox.tar pause.tar
zonenet_binaries

NET=zne2e-cri
zones 10.77.31.0/24 zne2e-cri-fe 10.77.32.0/24 zne2e-cri-be

CD=$WORK/containerd
SOCK=$CD/containerd.sock
mkdir -p "$CD" "$WORK/cnibin" "$WORK/net.d" "$WORK/pods"
ln -s "$REF_CNI_DIR"/* "$WORK/cnibin/"
[ "$ZN_MODE" = zonenet ] && ln -sf "$ZN_BIN/zonenet" "$WORK/cnibin/zonenet"
# The node path as deployed: with egress NAT, so its rules get checked and cleaned too.
ZN_IPMASQ=true
write_conflist "$WORK/net.d/10-$NET.conflist" $NET 1.0.0

cat >"$CD/config.toml" <<TOML
version = 2
root = "$CD/root"
state = "$CD/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$WORK/cnibin"
    conf_dir = "$WORK/net.d"
    max_conf_num = 1
TOML
# Own session: a Ctrl-C or timeout signals our process group, and containerd
# must outlive it so the cleanup can stop the pods through it.
setsid containerd --config "$CD/config.toml" >"$CD/containerd.log" 2>&1 &
CTRD_PID=$!
log "containerd pid $CTRD_PID"
defer stop_containerd
CTR=(ctr --address "$SOCK" --namespace k8s.io)
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$SOCK" "$SOCK" >"$WORK/crictl.yaml"
CRICTL=(crictl --config "$WORK/crictl.yaml")

stop_containerd() { stop_containerd_at $CTRD_PID "$SOCK"; }
on_failure() {
	log "containerd log (errors, tail):"
	grep -Ei 'level=(error|warning)' "$CD/containerd.log" | grep -v devmapper | tail -15 >&2 || true
	log "crictl stderr (tail):"
	grep -v cgroup_parent "$WORK/crictl.err" 2>/dev/null | tail -5 >&2 || true
	return 0
}

# ---- pod and container configs
$PY - "$WORK/pods" "$BUSYBOX_REF" "$SERVER_SH" <<'PY'
import json, os, sys
d, image, server = sys.argv[1:]
pods = {"a": "default", "b": "default", "c": "payments"}
for p, ns in pods.items():
    os.makedirs(f"{d}/logs-{p}", exist_ok=True)
    json.dump({"metadata": {"name": f"zne2e-cri-{p}", "namespace": ns, "uid": f"zne2e-cri-uid-{p}", "attempt": 0},
               "log_directory": f"{d}/logs-{p}", "linux": {}}, open(f"{d}/pod-{p}.json", "w"))
for c, cmd in {"srv": ["/bin/sh", "-c", server], "sleeper": ["/bin/sleep", "600"]}.items():
    json.dump({"metadata": {"name": c}, "image": {"image": image}, "command": cmd,
               "log_path": f"{c}.log", "linux": {}}, open(f"{d}/{c}.json", "w"))
PY

t0=$(now_ms)
for _ in $(seq 100); do
	[ -S "$SOCK" ] && timeout 2 "${CTR[@]}" version >/dev/null 2>&1 && break
	kill -0 $CTRD_PID 2>/dev/null || fail "containerd exited: $(tail -5 "$CD/containerd.log")"
	sleep 0.1
done
"${CTR[@]}" version >/dev/null || fail "containerd did not come up"
log "time: containerd up $(($(now_ms) - t0)) ms"
timed "image import" "${CTR[@]}" images import "$E2E_IMAGES/pause.tar" >/dev/null
"${CTR[@]}" images import "$E2E_IMAGES/busybox.tar" >/dev/null
# The CRI plugin loads the conflist asynchronously: wait for NetworkReady.
network_ready() {
	"${CRICTL[@]}" info 2>/dev/null | json '[c for c in d["status"]["conditions"] if c["type"] == "NetworkReady"][0]["status"]' 2>/dev/null | grep -q True
}
t0=$(now_ms)
until network_ready; do
	[ $(($(now_ms) - t0)) -lt 20000 ] || fail "CRI network not ready after 20 s: $("${CRICTL[@]}" info 2>&1 | grep -B3 -A3 NetworkReady)"
	sleep 0.2
done
log "time: CRI NetworkReady $(($(now_ms) - t0)) ms"

declare -A POD=() NETNS=() CID=()
teardown() {
	# Every pod of this private containerd is ours, including one whose
	# runp was interrupted.
	local p pods
	pods=$("${CRICTL[@]}" pods -q 2>/dev/null)
	for p in $pods; do
		"${CRICTL[@]}" stopp "$p" >/dev/null 2>>"$WORK/crictl.err" || log "cleanup: crictl stopp $p failed: $(tail -1 "$WORK/crictl.err")"
		"${CRICTL[@]}" rmp -f "$p" >/dev/null 2>>"$WORK/crictl.err" || log "cleanup: crictl rmp $p failed: $(tail -1 "$WORK/crictl.err")"
		rm -f "/var/lib/cni/results/$NET-$p-eth0" "/var/lib/cni/results/cni-loopback-$p-lo"
	done
	[ "$ZN_MODE" = zonenet ] && { cni_gc "$WORK/net.d/10-$NET.conflist" '[]' >/dev/null || log "cleanup: GC failed"; }
	return 0
}
defer teardown

crexec() { # CONTAINER-LABEL busybox-applet ARGS...
	local c=$1
	shift
	"${CRICTL[@]}" exec "${CID[$c]}" busybox "$@"
}

# pod LABEL CONTAINER-CONFIG: run a pod sandbox (CNI ADD) and one container in it.
pod() {
	local p=$1 t0 info
	t0=$(now_ms)
	POD[$p]=$("${CRICTL[@]}" runp "$WORK/pods/pod-$p.json" 2>>"$WORK/crictl.err") || fail "crictl runp pod-$p failed"
	log "time: crictl runp $p (pause + CNI ADD) $(($(now_ms) - t0)) ms"
	CID[$p]=$("${CRICTL[@]}" create "${POD[$p]}" "$WORK/pods/$2.json" "$WORK/pods/pod-$p.json" 2>>"$WORK/crictl.err") || fail "crictl create in pod-$p failed"
	"${CRICTL[@]}" start "${CID[$p]}" >/dev/null || fail "crictl start in pod-$p failed"
	info=$("${CRICTL[@]}" inspectp "${POD[$p]}") || fail "crictl inspectp pod-$p failed"
	REPORTED=$(json 'd["status"]["network"]["ip"]' <<<"$info")
	NETNS[$p]=$(json '[n.get("path", "") for n in d["info"]["runtimeSpec"]["linux"]["namespaces"] if n["type"] == "network"][0]' <<<"$info")
	[ -e "${NETNS[$p]}" ] || fail "pod-$p netns '${NETNS[$p]}' does not exist"
}

pod a srv
probe a frontend "$REPORTED" crexec a
pod b sleeper
probe b frontend "$REPORTED" crexec b
[ "${C_IP[a]}" != "${C_IP[b]}" ] || fail "pods a and b got the same address"
pod c sleeper
if [ "$ZN_MODE" = zonenet ]; then
	probe c backend "$REPORTED" crexec c
	ok "namespace payments -> zone backend"
else
	warn "reference plugin has no zones: pod c checked in the single subnet"
	probe c frontend "$REPORTED" crexec c
fi
assert_leases $NET a b c
if [ "$ZN_MODE" = zonenet ]; then
	# Subnets are unique to this script, so any rule naming them is ours.
	for sn in $FE_SUBNET $BE_SUBNET; do
		iptables-save -t nat | grep -qF -- "-s $sn " || fail "ipMasq: no nat rule for source $sn"
	done
	ok "egress NAT rules present for both zones"
fi
tcp_check b a crexec b

# ---- removal the kubelet way: stop (DEL with netns), then remove (DEL without)
t0=$(now_ms)
for p in a b c; do "${CRICTL[@]}" stopp "${POD[$p]}" >/dev/null || fail "crictl stopp pod-$p failed"; done
log "time: crictl stopp x3 $(($(now_ms) - t0)) ms"
t0=$(now_ms)
for p in a b c; do
	"${CRICTL[@]}" rmp "${POD[$p]}" >/dev/null || fail "crictl rmp pod-$p failed"
	unset "POD[$p]"
done
log "time: crictl rmp x3 $(($(now_ms) - t0)) ms"
[ -z "$("${CRICTL[@]}" pods -q)" ] || fail "pods left: $("${CRICTL[@]}" pods)"
assert_clean $NET a b c -- "${NETNS[a]}" "${NETNS[b]}" "${NETNS[c]}"

if [ "$ZN_MODE" = zonenet ]; then
	# GC with no valid attachment: empty zones lose their bridge and NAT rules.
	timed "GC none valid" cni_gc "$WORK/net.d/10-$NET.conflist" '[]' >/dev/null || fail "GC failed"
	for br in $FE_BR $BE_BR; do
		! ip link show "$br" >/dev/null 2>&1 || fail "GC left zone bridge $br with no attachment"
	done
	! iptables-save | grep -F -e "$FE_SUBNET" -e "$BE_SUBNET" || fail "GC left iptables rules naming $FE_SUBNET or $BE_SUBNET (above)"
	ok "GC removed both zone bridges and their NAT rules"
fi
