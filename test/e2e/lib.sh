# shellcheck shell=bash disable=SC2034  # constants used by the sourcing scripts
# Shared helpers of the end-to-end scripts; sourced, never run.
#
# Every script drives zonenet through one real container runtime, asserts on
# what the kernel and the runtime show (addresses on eth0, host veths, bridge
# ports, TCP payloads, the plugin's own state) and cleans up after itself,
# including on failure. Scripts use disjoint names and subnets so they can run
# side by side.
#
# Environment:
#   ZONENET_BIN          dir holding zonenet (and zonenetctl); default: built into the work dir
#   ZONENET_E2E_CACHE    tools and images made by setup.sh (default /var/cache/zonenet-e2e)
#   ZONENET_E2E_PLUGIN   "zonenet" (default) or "reference": run the same harness on the
#                        reference bridge + host-local plugins, to check the harness itself
#   ZONENET_E2E_KEEP=1   keep the work dir (logs, configs) after the run
#   ZONENET_E2E_TRACE=1  trace every command (set -x)

set -Eeuo pipefail
[ "${ZONENET_E2E_TRACE:-}" = 1 ] && set -x

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
E2E_CACHE=${ZONENET_E2E_CACHE:-/var/cache/zonenet-e2e}
E2E_IMAGES=$E2E_CACHE/images
BUSYBOX_REF=zonenet.test/e2e/busybox:1
PAUSE_REF=zonenet.test/e2e/pause:1
REF_CNI_DIR=/usr/lib/cni
export PATH="$E2E_CACHE/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH:/usr/local/go/bin"
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

ZN_MODE=${ZONENET_E2E_PLUGIN:-zonenet}
case $ZN_MODE in
zonenet) VETH_RE='^zn[0-9a-f]{12}$' ;;
reference) VETH_RE='^veth[0-9a-f]{8}$' ;;
*) echo "ZONENET_E2E_PLUGIN must be zonenet or reference, not '$ZN_MODE'" >&2; exit 2 ;;
esac

# TCP echo server run inside containers: answers each connection with
# "pong-<first line received>", so one exchange proves both directions.
TCP_PORT=8080
SERVER_SH="while true; do nc -l -p $TCP_PORT -e /bin/sh -c 'read l; echo pong-\$l'; done"

# ---------------------------------------------------------------- logging

now_ms() { date +%s%3N; }
E2E_T0=$(now_ms)
E2E_NAME=${E2E_NAME:-e2e}

log() { printf '[%s %6.2fs] %s\n' "$E2E_NAME" "$(elapsed)" "$*" >&2; }
elapsed() { local d=$(($(now_ms) - E2E_T0)); printf '%d.%02d' $((d / 1000)) $((d % 1000 / 10)); }
warn() { log "WARNING: $*"; }
fail() {
	log "FAIL: $*"
	E2E_FAILED=1
	exit 1
}
ok() { log "ok: $*"; }

# timed LABEL CMD... runs CMD and logs how long it took; keeps its exit status.
timed() {
	local label=$1 t0 rc=0
	shift
	t0=$(now_ms)
	"$@" || rc=$?
	log "time: $label $(($(now_ms) - t0)) ms"
	return $rc
}

# ---------------------------------------------------------------- cleanup stack

E2E_DEFERRED=()
E2E_FAILED=0
# defer CMD: run CMD (a string, eval'ed) at exit, last deferred first.
defer() { E2E_DEFERRED+=("$1"); }

e2e_exit() {
	local rc=$?
	set +e +u
	trap - ERR
	[ $rc -ne 0 ] && E2E_FAILED=1
	if [ "$E2E_FAILED" = 1 ] && declare -F on_failure >/dev/null; then
		on_failure
	fi
	log "cleanup"
	local e2e_di
	for ((e2e_di = ${#E2E_DEFERRED[@]} - 1; e2e_di >= 0; e2e_di--)); do
		eval "${E2E_DEFERRED[$e2e_di]}" || log "cleanup step failed (ignored): ${E2E_DEFERRED[$e2e_di]}"
	done
	if [ "$E2E_FAILED" = 1 ]; then
		log "RESULT: FAIL ($E2E_NAME, $(elapsed) s)"
		exit 1
	fi
	log "RESULT: PASS ($E2E_NAME, $(elapsed) s)"
	exit 0
}

on_err() {
	local rc=$? line=$1 cmd=$2
	log "FAIL: command exited $rc at line $line: $cmd"
	E2E_FAILED=1
}

# e2e_init NAME: common start of every script.
e2e_init() {
	E2E_NAME=$1
	[ "$(id -u)" = 0 ] || {
		echo "$E2E_NAME: must run as root (network namespaces, bridges, containerd)" >&2
		exit 1
	}
	WORK=$(mktemp -d "/tmp/zne2e-$E2E_NAME.XXXXXX")
	trap 'on_err $LINENO "$BASH_COMMAND"' ERR
	trap e2e_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	defer remove_workdir
	log "mode=$ZN_MODE work=$WORK"
	snapshot_host
	defer restore_host
}

remove_workdir() {
	unmount_under "$WORK"
	if [ "${ZONENET_E2E_KEEP:-}" = 1 ]; then
		log "kept $WORK"
		return 0
	fi
	if grep -q " $WORK/" /proc/self/mounts; then
		log "not removing $WORK: still mounted below it"
		return 1
	fi
	rm -rf --one-file-system "$WORK"
}

# unmount_under DIR: unmount everything mounted below DIR, deepest first.
unmount_under() {
	local m
	for m in $(awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
	done
}

# need CMD...: fail unless every command exists.
need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || fail "$c not found: run test/e2e/setup.sh first"
	done
}

need_images() {
	local f
	for f in "$@"; do
		[ -s "$E2E_IMAGES/$f" ] || fail "$E2E_IMAGES/$f missing: run test/e2e/setup.sh first"
	done
}

# ---------------------------------------------------------------- host state

HOST_SYSCTLS=(net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.bridge.bridge-nf-call-iptables
	net.bridge.bridge-nf-call-ip6tables net.bridge.bridge-nf-call-arptables)
declare -A SAVED_SYSCTL=()
SAVED_CHAINS=
SAVED_IPSETS=

list_chains() {
	local t
	for t in iptables ip6tables; do
		command -v $t-save >/dev/null || continue
		$t-save 2>/dev/null | awk -v fam=$t '/^\*/ {tbl = substr($1, 2)} /^:/ {print fam, tbl, substr($1, 2)}'
	done | sort
}

snapshot_host() {
	local k v
	for k in "${HOST_SYSCTLS[@]}"; do
		v=$(sysctl -n "$k" 2>/dev/null) && SAVED_SYSCTL[$k]=$v
	done
	SAVED_CHAINS=$(list_chains)
	SAVED_IPSETS=$(ipset list -n 2>/dev/null | sort || true)
}

# zonenet_in_use: true while any zonenet host veth exists on this host (ours
# or another test's), in which case shared plugin chains must stay.
zonenet_in_use() {
	ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -Eq '^zn[0-9a-f]{12}$'
}

restore_host() {
	local k cur
	for k in "${!SAVED_SYSCTL[@]}"; do
		cur=$(sysctl -n "$k" 2>/dev/null) || continue
		if [ "$cur" != "${SAVED_SYSCTL[$k]}" ]; then
			sysctl -qw "$k=${SAVED_SYSCTL[$k]}" && log "restored $k=${SAVED_SYSCTL[$k]} (was $cur)"
		fi
	done
	# Chains and sets the plugin created during this run. They are shared by
	# every zonenet network on the host, so drop them only when no zonenet
	# attachment is left anywhere.
	local new
	new=$(comm -13 <(echo "$SAVED_CHAINS") <(list_chains) | grep -Ei ' (zonenet|zn)[-_]' || true)
	if [ -n "$new" ]; then
		if zonenet_in_use; then
			log "leaving plugin chains (zonenet still in use on this host): $(echo "$new" | awk '{print $3}' | tr '\n' ' ')"
		else
			remove_chains "$new"
		fi
	fi
	local sets
	sets=$(comm -13 <(echo "$SAVED_IPSETS") <(ipset list -n 2>/dev/null | sort) | grep -Ei '^(zonenet|zn)[-_]' || true)
	if [ -n "$sets" ] && ! zonenet_in_use; then
		for k in $sets; do ipset destroy "$k" 2>/dev/null && log "destroyed ipset $k"; done
	fi
}

# remove_chains "FAMILY TABLE CHAIN" lines: drop every jump to them, then flush and delete.
remove_chains() {
	local fam tbl chain rule
	while read -r fam tbl chain; do
		[ -n "$chain" ] || continue
		while read -r rule; do
			[ -n "$rule" ] || continue
			eval "$fam -w -t $tbl -D ${rule#-A }" 2>/dev/null || true
		done < <($fam-save -t "$tbl" 2>/dev/null | grep -E -- "^-A .* -[jg] $chain( |\$)" || true)
	done <<<"$1"
	while read -r fam tbl chain; do
		[ -n "$chain" ] && $fam -w -t "$tbl" -F "$chain" 2>/dev/null
	done <<<"$1"
	while read -r fam tbl chain; do
		[ -n "$chain" ] && $fam -w -t "$tbl" -X "$chain" 2>/dev/null && log "removed chain $fam/$tbl/$chain"
	done <<<"$1"
	return 0
}

# del_bridge NAME: delete a bridge this script named (also at start, as a leftover).
del_bridge() {
	if ip link show "$1" >/dev/null 2>&1; then
		ip link del "$1" && log "deleted bridge $1"
	fi
	return 0
}

# ---------------------------------------------------------------- binaries

ZN_BIN=
ZN_CTL=
# zonenet_binaries: find or build zonenet and zonenetctl.
zonenet_binaries() {
	if [ -n "${ZONENET_BIN:-}" ]; then
		ZN_BIN=$(cd "$ZONENET_BIN" && pwd)
	else
		ZN_BIN=$WORK/bin
		mkdir -p "$ZN_BIN"
		if [ "$ZN_MODE" = zonenet ]; then
			(cd "$REPO_ROOT" && timed "go build zonenet" go build -o "$ZN_BIN/zonenet" ./cmd/zonenet) ||
				fail "go build ./cmd/zonenet failed"
			(cd "$REPO_ROOT" && go build -o "$ZN_BIN/zonenetctl" ./cmd/zonenetctl 2>"$WORK/zonenetctl-build.log") ||
				warn "go build ./cmd/zonenetctl failed: $(head -3 "$WORK/zonenetctl-build.log")"
		fi
	fi
	if [ "$ZN_MODE" = zonenet ]; then
		[ -x "$ZN_BIN/zonenet" ] || fail "$ZN_BIN/zonenet missing"
		if [ -x "$ZN_BIN/zonenetctl" ]; then
			ZN_CTL=$ZN_BIN/zonenetctl
		else
			warn "zonenetctl not available: lease assertions are skipped"
		fi
	fi
	return 0
}

# ---------------------------------------------------------------- network config

# zones FE_SUBNET FE_BRIDGE BE_SUBNET BE_BRIDGE: the two zones every script uses.
zones() {
	FE_SUBNET=$1 FE_BR=$2 BE_SUBNET=$3 BE_BR=$4
	FE_GW=$(first_host "$FE_SUBNET")
	BE_GW=$(first_host "$BE_SUBNET")
	del_bridge "$FE_BR"
	del_bridge "$BE_BR"
	defer "del_bridge $FE_BR; del_bridge $BE_BR"
	ZN_DATA=$WORK/zonenet-data
	mkdir -p "$ZN_DATA"
}

# ip2int A.B.C.D: REPLY = the address as an integer (IPv4 only, no fork).
ip2int() {
	local IFS=. a b c d
	read -r a b c d <<<"$1"
	REPLY=$(((a << 24) | (b << 16) | (c << 8) | d))
}

# first_host CIDR: print the first usable address of an IPv4 subnet.
first_host() {
	ip2int "${1%/*}"
	local n=$((REPLY + 1))
	echo "$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))"
}

# plugin_entry: the plugin object of the conflist, for the current mode.
# ZN_IPMASQ=true turns on zonenet's egress NAT (no traffic leaves the host in
# these tests; the rules are only checked for and cleaned up).
plugin_entry() {
	if [ "$ZN_MODE" = zonenet ]; then
		cat <<JSON
{"type": "zonenet", "mode": "bridge", "dataDir": "$ZN_DATA", "ipMasq": ${ZN_IPMASQ:-false},
 "defaultZone": "frontend", "namespaceZones": {"payments": "backend"},
 "zones": [{"name": "frontend", "subnet": "$FE_SUBNET", "bridge": "$FE_BR"},
           {"name": "backend", "subnet": "$BE_SUBNET", "bridge": "$BE_BR"}],
 "capabilities": {"portMappings": true}}
JSON
	else
		cat <<JSON
{"type": "bridge", "bridge": "$FE_BR", "isGateway": true, "ipMasq": false,
 "ipam": {"type": "host-local", "dataDir": "$ZN_DATA",
          "ranges": [[{"subnet": "$FE_SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
JSON
	fi
}

# write_conflist FILE NETWORK CNIVERSION
write_conflist() {
	local ver=$3
	# The reference plugins of Debian 12 stop at CNI 1.0.0.
	[ "$ZN_MODE" = reference ] && ver=1.0.0
	mkdir -p "$(dirname "$1")"
	cat >"$1" <<JSON
{"cniVersion": "$ver", "name": "$2", "plugins": [
$(plugin_entry)
]}
JSON
	$PY -m json.tool "$1" >/dev/null || fail "invalid JSON in $1"
}

# cni_gc CONFLIST VALID_JSON: call the plugin's GC verb directly (CNI 1.1.0),
# keeping only the attachments listed in VALID_JSON, e.g.
# '[{"containerID":"abc","ifname":"eth0"}]'.
cni_gc() {
	local conf
	conf=$($PY - "$1" "$2" <<'PY'
import json, sys
nl = json.load(open(sys.argv[1]))
p = dict(nl["plugins"][0])
p.update({"cniVersion": "1.1.0", "name": nl["name"], "cni.dev/valid-attachments": json.loads(sys.argv[2])})
print(json.dumps(p))
PY
)
	printf '%s' "$conf" | CNI_COMMAND=GC CNI_PATH="$ZN_BIN" "$ZN_BIN/zonenet"
}

# ---------------------------------------------------------------- JSON and addresses

# json EXPR < doc: print a Python expression over the parsed document d.
json() { $PY -c 'import json,sys; d=json.load(sys.stdin); v=eval(sys.argv[1]); print(v if not isinstance(v,(dict,list)) else json.dumps(v))' "$1"; }

# in_subnet IP CIDR: true when the IPv4 address IP lies in CIDR.
in_subnet() {
	local bits=${2#*/} ip net mask
	ip2int "$1"
	ip=$REPLY
	ip2int "${2%/*}"
	net=$REPLY
	mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
	[ $((ip & mask)) = $((net & mask)) ]
}

# ---------------------------------------------------------------- container probes

declare -A C_IP=() C_MAC=() C_VETH=() C_ZONE=()

# probe LABEL ZONE REPORTED_IP EXEC...: EXEC... runs a busybox applet inside
# the container (e.g. "ip netns exec ns busybox", "podman exec c busybox").
# Asserts eth0 has one address, in ZONE's subnet and equal to what the runtime
# reported, a default route via the zone gateway, and a host veth peer with
# the expected name on the zone's bridge. Records IP, MAC and host veth.
# Process starts are slow on some CI hosts: one exec into the container.
PROBE_SH='busybox ip -4 -o addr show dev eth0 | busybox sed "s/^/addr /"
busybox ip -4 route show default | busybox sed "s/^/route /"
echo "mac $(busybox cat /sys/class/net/eth0/address)"
echo "iflink $(busybox cat /sys/class/net/eth0/iflink)"'
probe() {
	local label=$1 zone=$2 reported=${3%/*}
	shift 3
	local subnet gw br
	if [ "$zone" = backend ]; then subnet=$BE_SUBNET gw=$BE_GW br=$BE_BR; else subnet=$FE_SUBNET gw=$FE_GW br=$FE_BR; fi
	local out addrs ip mac iflink veth link route
	out=$("$@" sh -c "$PROBE_SH" 2>&1) || fail "$label: cannot inspect eth0 inside the container: $out"
	addrs=$(grep '^addr ' <<<"$out" || true)
	[ -n "$addrs" ] || fail "$label: no IPv4 address on eth0: $out"
	[ "$(wc -l <<<"$addrs")" = 1 ] || fail "$label: expected one IPv4 address on eth0, got: $addrs"
	ip=$(awk '{print $5}' <<<"$addrs")
	ip=${ip%/*}
	in_subnet "$ip" "$subnet" || fail "$label: eth0 address $ip is not in zone $zone ($subnet)"
	[ "$ip" = "$reported" ] || fail "$label: eth0 has $ip but the runtime reports '$reported'"
	route=$(grep '^route ' <<<"$out" || true)
	grep -q "^route default via $gw " <<<"$route " || fail "$label: default route is '${route#route }', want via $gw"
	mac=$(awk '$1 == "mac" {print $2}' <<<"$out")
	iflink=$(awk '$1 == "iflink" {print $2}' <<<"$out")
	link=$(ip -o link show | awk -F': ' -v i="$iflink" '$1 == i')
	[ -n "$link" ] || fail "$label: no host interface with ifindex $iflink (peer of eth0)"
	veth=$(awk -F': ' '{sub(/@.*/, "", $2); print $2}' <<<"$link")
	[[ $veth =~ $VETH_RE ]] || fail "$label: host veth '$veth' does not match $VETH_RE"
	[[ $link == *" master $br "* ]] || fail "$label: host veth $veth is not on bridge $br: $link"
	ip -4 -o addr show dev "$br" | grep -q " $gw/" || fail "$label: bridge $br lacks gateway $gw"
	C_IP[$label]=$ip C_MAC[$label]=$mac C_VETH[$label]=$veth C_ZONE[$label]=$zone
	ok "$label: eth0 $ip ($zone $subnet) mac $mac, host veth $veth on $br, default via $gw"
}

# tcp_check FROM_LABEL TO_LABEL EXEC...: EXEC... runs busybox in FROM; the
# SERVER_SH listener must run in TO. The token goes in the command line, not
# stdin: exec paths like crictl's attach no stdin. Retries for up to 10 s
# while the listener starts.
tcp_check() {
	local from=$1 to=$2
	shift 2
	local token out t0 dst=${C_IP[$to]}
	token=$from-$RANDOM$RANDOM
	t0=$(now_ms)
	while :; do
		out=$("$@" sh -c "echo $token | busybox nc -w 3 $dst $TCP_PORT" 2>&1) || true
		if [ "$out" = "pong-$token" ]; then
			ok "TCP $from -> $to ($dst:$TCP_PORT): sent '$token', got '$out' ($(($(now_ms) - t0)) ms)"
			return 0
		fi
		[ $(($(now_ms) - t0)) -lt 10000 ] || break
		sleep 0.2
	done
	fail "TCP $from -> $to ($dst:$TCP_PORT): sent '$token', last answer '$out'"
}

# ---------------------------------------------------------------- plugin state

# ctl_status NETWORK: run `zonenetctl status` into CTL_OUT; returns 2 when it
# cannot be used (not built, or the status command not there yet).
CTL_OK=
CTL_OUT=
ctl_status() {
	[ -n "$ZN_CTL" ] || return 2
	local rc=0
	CTL_OUT=$("$ZN_CTL" status --data-dir "$ZN_DATA" --network "$1" 2>&1) || rc=$?
	if [ $rc -ne 0 ]; then
		if [ -z "$CTL_OK" ]; then
			warn "zonenetctl status failed (rc=$rc), skipping lease assertions: $(head -3 <<<"$CTL_OUT")"
			ZN_CTL=
			return 2
		fi
		fail "zonenetctl status --data-dir $ZN_DATA --network $1 failed (rc=$rc): $CTL_OUT"
	fi
	CTL_OK=1
}

# status_rows NETWORK: rows of the last status output that belong to NETWORK.
status_rows() { awk -v n="$1" 'NR > 1 && $1 == n' <<<"$CTL_OUT"; }

# assert_leases NETWORK LABEL...: each container has its lease row (network,
# zone, IP, MAC, host veth) and the network has no other row.
assert_leases() {
	local net=$1 label rows row
	shift
	[ "$ZN_MODE" = zonenet ] || return 0
	ctl_status "$net" || return 0
	rows=$(status_rows "$net")
	for label in "$@"; do
		row=$(awk -v ip="${C_IP[$label]}" '{for (i = 2; i <= NF; i++) {f = $i; sub(/\/.*/, "", f); if (f == ip) {print; next}}}' <<<"$rows")
		[ -n "$row" ] || fail "zonenetctl status has no row for $label (${C_IP[$label]}) in network $net:"$'\n'"$CTL_OUT"
		[ "$(wc -l <<<"$row")" = 1 ] || fail "zonenetctl status has several rows for ${C_IP[$label]}:"$'\n'"$row"
		grep -qiw -- "${C_MAC[$label]}" <<<"$row" || fail "status row of $label lacks eth0's MAC ${C_MAC[$label]}: $row"
		grep -qw -- "${C_VETH[$label]}" <<<"$row" || fail "status row of $label lacks host veth ${C_VETH[$label]}: $row"
		grep -qw -- "${C_ZONE[$label]}" <<<"$row" || fail "status row of $label lacks zone ${C_ZONE[$label]}: $row"
	done
	[ "$(grep -c . <<<"$rows")" = $# ] || fail "zonenetctl status: want $# rows for $net, got:"$'\n'"$rows"
	ok "zonenetctl status: $# leases in $net match the containers"
}

assert_no_leases() {
	local net=$1 rows
	[ "$ZN_MODE" = zonenet ] || return 0
	ctl_status "$net" || return 0
	rows=$(status_rows "$net")
	[ -z "$rows" ] || fail "leases left in zonenetctl status for $net:"$'\n'"$rows"
	ok "zonenetctl status: no lease left in $net"
}

# assert_clean NETWORK LABEL... [-- NETNS_PATH...]: after the runtime removed
# the containers, nothing of theirs may be left on the host.
assert_clean() {
	local net=$1 label v br paths=() labels=()
	shift
	while [ $# -gt 0 ]; do
		if [ "$1" = -- ]; then
			shift
			paths=("$@")
			break
		fi
		labels+=("$1")
		shift
	done
	for label in "${labels[@]}"; do
		v=${C_VETH[$label]}
		! ip link show "$v" >/dev/null 2>&1 || fail "host veth $v of $label still exists after removal"
		if iptables-save 2>/dev/null | grep -Eq -- "(^| )${C_IP[$label]//./\\.}(/32)?( |$)"; then
			fail "iptables rules still name ${C_IP[$label]} ($label) after removal:"$'\n'"$(iptables-save | grep -F -- "${C_IP[$label]}")"
		fi
	done
	for br in "$FE_BR" "$BE_BR"; do
		ip link show "$br" >/dev/null 2>&1 || continue
		v=$(ip -o link show master "$br" | awk -F': ' '{sub(/@.*/, "", $2); print $2}')
		[ -z "$v" ] || fail "bridge $br still has ports after removal: $v"
	done
	for v in "${paths[@]}"; do
		[ -z "$v" ] || [ ! -e "$v" ] || fail "network namespace $v still exists after removal"
	done
	assert_no_leases "$net"
	ok "nothing left: ${#labels[@]} host veths gone, bridge ports empty, no rule names the IPs, ${#paths[@]} netns gone"
}

# kill_pid PID [NAME]: stop a process this script started, SIGTERM then SIGKILL.
kill_pid() {
	local pid=$1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill "$pid" 2>/dev/null
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "${2:-$pid} did not stop on SIGTERM, killing"
	kill -9 "$pid" 2>/dev/null
	return 0
}

# pids_with_arg STRING: PIDs whose command line contains STRING (a path unique
# to this run, so these are processes this script started, e.g. shims).
pids_with_arg() {
	local p args
	for p in /proc/[0-9]*; do
		mapfile -d '' args 2>/dev/null <"$p/cmdline" || continue
		[[ " ${args[*]} " == *"$1"* ]] && echo "${p#/proc/}"
	done
	return 0
}

# kill_tree PID: SIGKILL PID and all its descendants (e.g. a leftover shim and
# the container processes it holds).
kill_tree() {
	local p pp kids=()
	for p in /proc/[0-9]*; do
		read -r _ _ _ pp _ 2>/dev/null <"$p/stat" || continue
		[ "$pp" = "$1" ] && kids+=("${p#/proc/}")
	done
	kill -STOP "$1" 2>/dev/null
	for p in "${kids[@]}"; do kill_tree "$p"; done
	kill -9 "$1" 2>/dev/null
	return 0
}

# stop_containerd_at PID SOCKET: stop a containerd this script started, then
# any shim (and its containers) it left, found by the socket path.
stop_containerd_at() {
	kill_pid "$1" containerd
	local p
	for p in $(pids_with_arg "$2"); do
		kill_tree "$p" && log "killed leftover shim $p and its children"
	done
	return 0
}
