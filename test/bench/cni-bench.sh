#!/usr/bin/env bash
# Benchmark the zonenet CNI plugin against the reference bridge + host-local
# plugins (containernetworking/plugins), exec'd the way a runtime does.
#
# Everything happens in network namespaces this script creates: one that
# plays the host per plugin configuration (bridges, iptables rules and
# sysctls land there) and one per container. The machine's own namespace is
# never touched. Needs root, ip(8), iptables, Go and the module proxy.
#
#   sudo test/bench/cni-bench.sh                           # full run
#   OPS=20 PAR=10 EXISTING=50 test/bench/cni-bench.sh       # smoke, < 1 min idle
#   OUT=bench.txt test/bench/cni-bench.sh                  # also save the table
#   POLICY=deploy/policy-reference.yaml test/bench/cni-bench.sh  # also zonenet with a policy
#
# Knobs: OPS (sequential ADDs, then DELs; 200), PAR (parallel ADDs, then
# DELs; 100), EXISTING (kept attachments; 500), PAIRS (ADD+DEL pairs timed
# at 0 and at EXISTING; OPS/4, at least 5), REF_VERSION (v1.10.0), SKIP_REF=1 / SKIP_ZN=1,
# POLICY (a policy file: adds a zonenet column whose network has that policy
# and its zones, and a second table comparing it with the reference; off by
# default, so the first table stays comparable between runs).
set -euo pipefail

OPS=${OPS:-200}
PAR=${PAR:-100}
EXISTING=${EXISTING:-500}
PAIRS=${PAIRS:-$((OPS / 4 > 5 ? OPS / 4 : 5))}
REF_VERSION=${REF_VERSION:-v1.10.0}
OUT=${OUT:-}
POLICY=${POLICY:-}

if [[ -n $POLICY ]]; then
	[[ -r $POLICY ]] || { echo "cni-bench: POLICY=$POLICY: not a readable file" >&2; exit 1; }
	policy_file=$(readlink -f "$POLICY")
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init cni-bench "network namespaces, bridges, iptables" ip iptables go

log() { echo "cni-bench: $*" >&2; }

# --- build -------------------------------------------------------------
mkdir -p "$tmp/ref-bin" "$tmp/zn-bin" "$tmp/res"
log "building driver"
(cd "$repo" && go build -o "$tmp/cnibench" ./test/bench/cnibench)

ref_ok=1
if [[ ${SKIP_REF:-0} != 1 ]]; then
	log "building reference bridge + host-local $REF_VERSION"
	# Outside the module so its go.mod does not pin the reference build.
	if ! (cd "$tmp" && GOBIN="$tmp/ref-bin" GOFLAGS=-buildvcs=false go install \
		"github.com/containernetworking/plugins/plugins/main/bridge@$REF_VERSION" \
		"github.com/containernetworking/plugins/plugins/ipam/host-local@$REF_VERSION") >"$tmp/ref-build.log" 2>&1; then
		cat "$tmp/ref-build.log" >&2
		ref_ok=0
	elif ! CNI_COMMAND=VERSION "$tmp/ref-bin/bridge" </dev/null >/dev/null ||
		! CNI_COMMAND=VERSION "$tmp/ref-bin/host-local" </dev/null >/dev/null; then
		echo "reference plugins built but VERSION failed" >"$tmp/ref-build.log"
		ref_ok=0
	fi
else
	echo "skipped (SKIP_REF=1)" >"$tmp/ref-build.log"
	ref_ok=0
fi

zn_ok=1
if [[ ${SKIP_ZN:-0} != 1 ]]; then
	log "building zonenet"
	# Built as `make build` does: static, stripped.
	if ! (cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/zn-bin/zonenet" ./cmd/zonenet) >"$tmp/zn-build.log" 2>&1; then
		{ echo "go build -o \$TMP/zonenet ./cmd/zonenet failed:"; cat "$tmp/zn-build.log"; } >"$tmp/zn-build.err"
		cat "$tmp/zn-build.err" >&2
		zn_ok=0
	fi
else
	echo "skipped (SKIP_ZN=1)" >"$tmp/zn-build.err"
	zn_ok=0
fi

# --- configs -----------------------------------------------------------
tag=$$
ref_conf() { # $1 = file, $2 = ipMasq, $3 = bridge, $4 = host-local dataDir
	cat >"$1" <<JSON
{"cniVersion":"1.0.0","name":"bench","plugins":[
 {"type":"bridge","bridge":"$3","isGateway":true,"ipMasq":$2,
  "ipam":{"type":"host-local","dataDir":"$4","ranges":[[{"subnet":"10.88.0.0/16"}]],"routes":[{"dst":"0.0.0.0/0"}]}}]}
JSON
}
ref_conf "$tmp/ref-masq.conflist" true "znbr${tag}a" "$tmp/ref-masq/hl"
ref_conf "$tmp/ref-nomasq.conflist" false "znbr${tag}b" "$tmp/ref-nomasq/hl"
cat >"$tmp/zonenet.conflist" <<JSON
{"cniVersion":"1.1.0","name":"bench","plugins":[
 {"type":"zonenet","mode":"bridge","dataDir":"$tmp/zonenet/zn","ipMasq":true,
  "zones":[{"name":"frontend","subnet":"10.89.0.0/16","bridge":"znbr${tag}z"}]}]}
JSON

# With a policy, the network takes the policy's zones; every attachment
# goes to the first one, which the driver widens when the run keeps more
# attachments alive than it can hold.
pol_ok=0
if [[ -n $POLICY && $zn_ok == 1 ]]; then
	need=$((OPS > PAR ? OPS : PAR))
	need=$((need > EXISTING + 1 ? need : EXISTING + 1))
	if "$tmp/cnibench" policy-net -policy "$policy_file" -need $((need + 3)) -bridge-prefix "znbr${tag}p" \
		-data-dir "$tmp/zn-policy/zn" -conflist "$tmp/zn-policy.conflist" -policy-out "$tmp/zn-policy.policy" \
		2>"$tmp/zn-policy.err"; then
		pol_ok=1
	fi
	cat "$tmp/zn-policy.err" >&2
elif [[ -n $POLICY ]]; then
	cp "$tmp/zn-build.err" "$tmp/zn-policy.err"
fi

# --- run ---------------------------------------------------------------
# One host namespace per configuration, so no rule, bridge or lease of one
# can slow down or help another. A single driver measures all of them,
# interleaving sequential ops so that load drift hits each alike; it
# starts each plugin from a thread that joined that plugin's host namespace.
targets=()
add_target() { # LABEL BINDIR
	local ns="znbench-host-$$-$1"
	ip netns add "$ns"
	bench_ns+=("$ns")
	ip netns exec "$ns" ip link set lo up
	mkdir -p "$tmp/$1"
	targets+=("$1:$tmp/$1.conflist:$2:/run/netns/$ns:$tmp/res/$1.json")
}

if [[ $ref_ok == 1 ]]; then
	add_target ref-masq "$tmp/ref-bin"
	add_target ref-nomasq "$tmp/ref-bin"
else
	"$tmp/cnibench" fail -label ref-masq -msg-file "$tmp/ref-build.log" -out "$tmp/res/ref-masq.json"
	"$tmp/cnibench" fail -label ref-nomasq -msg-file "$tmp/ref-build.log" -out "$tmp/res/ref-nomasq.json"
fi
if [[ $zn_ok == 1 ]]; then
	add_target zonenet "$tmp/zn-bin"
else
	"$tmp/cnibench" fail -label zonenet -msg-file "$tmp/zn-build.err" -out "$tmp/res/zonenet.json"
fi
if [[ $pol_ok == 1 ]]; then
	add_target zn-policy "$tmp/zn-bin"
elif [[ -n $POLICY ]]; then
	"$tmp/cnibench" fail -label zn-policy -msg-file "$tmp/zn-policy.err" -out "$tmp/res/zn-policy.json"
fi

if ((${#targets[@]} > 0)); then
	log "measuring ${targets[*]%%:*}"
	# The driver itself also lives in a bench namespace (and in the private
	# mount namespace ip-netns-exec gives it, which holds the container
	# netns pins and dies with it).
	ip netns exec "${bench_ns[0]}" "$tmp/cnibench" run \
		-nsdir "$tmp/netns" -outer-netns "/proc/$$/ns/net" \
		-ops "$OPS" -par "$PAR" -existing "$EXISTING" -pairs "$PAIRS" \
		"${targets[@]}" &
	driver_pid=$!
	wait "$driver_pid" || log "driver reported an error (see table)"
	driver_pid=
fi

echo
"$tmp/cnibench" table -base "$tmp/res/ref-masq.json" -extra "$tmp/res/ref-nomasq.json" \
	-target "$tmp/res/zonenet.json" ${POLICY:+-policy "$tmp/res/zn-policy.json" -policy-name "$POLICY"} \
	${OUT:+-out "$OUT"}
