#!/bin/sh
# install-cni.sh: put the zonenet plugin and its network config on a node.
#
# Runs as the entrypoint of the zonenet image in a DaemonSet that mounts the
# node's /opt/cni/bin and /etc/cni/net.d at /host/...; also usable by hand.
# Both files are replaced atomically (written under a temporary name in the
# target directory, then renamed), so a runtime never execs a half-copied
# plugin nor loads a half-written config. The temporary names do not end in
# .conf/.conflist/.json, so runtimes watching net.d ignore them.
set -eu

CNI_BIN_DIR="${CNI_BIN_DIR:-/host/opt/cni/bin}"
CNI_NET_DIR="${CNI_NET_DIR:-/host/etc/cni/net.d}"
ZONENET_SRC_DIR="${ZONENET_SRC_DIR:-/opt/zonenet/bin}"
CNI_CONF_NAME="${CNI_CONF_NAME:-10-zonenet.conflist}"
CNI_CONF_TEMPLATE="${CNI_CONF_TEMPLATE:-/etc/zonenet/10-zonenet.conflist}"
# CNI_NETWORK_CONFIG, when set and not empty, is the conflist itself and
# wins over CNI_CONF_TEMPLATE.
CNI_NETWORK_CONFIG="${CNI_NETWORK_CONFIG:-}"

usage() {
	cat <<EOF
Usage: install-cni.sh [--once]

Copies $ZONENET_SRC_DIR/zonenet to \$CNI_BIN_DIR and writes the conflist
\$CNI_NET_DIR/\$CNI_CONF_NAME, then sleeps until SIGTERM (DaemonSet style).
--once exits after installing.

Environment (current value):
  CNI_BIN_DIR         $CNI_BIN_DIR
  CNI_NET_DIR         $CNI_NET_DIR
  ZONENET_SRC_DIR     $ZONENET_SRC_DIR
  CNI_CONF_NAME       $CNI_CONF_NAME
  CNI_CONF_TEMPLATE   $CNI_CONF_TEMPLATE   (used when CNI_NETWORK_CONFIG is empty)
  CNI_NETWORK_CONFIG  the conflist JSON itself
EOF
}

log() { echo "install-cni: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

once=0
for arg in "$@"; do
	case "$arg" in
	--once) once=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
done

tmp=""
cleanup() { [ -z "$tmp" ] || rm -f "$tmp"; }
trap cleanup EXIT

# stage DST: set $tmp to a fresh name next to DST, on the same file system,
# so the final rename is atomic. The file is removed on exit unless renamed.
stage() {
	tmp="$(dirname "$1")/.$(basename "$1").tmp.$$"
	rm -f "$tmp"
}

# commit DST MODE CHECK: set MODE on the staged file, run CHECK on it, and
# rename it over DST. A failed check leaves DST as it was.
commit() {
	chmod "$2" "$tmp" || die "chmod $tmp"
	"$3" "$tmp" || die "$1: check failed, left the installed file unchanged"
	mv -f "$tmp" "$1" || die "rename $tmp to $1"
	tmp=""
}

# The copy must run from where the runtime will run it: this catches a
# truncated copy, a wrong architecture and a noexec mount.
check_plugin() {
	out=$(CNI_COMMAND=VERSION "$1" </dev/null 2>&1) || {
		log "$1 does not run: $out"
		return 1
	}
	case "$out" in
	*cniVersion*) return 0 ;;
	esac
	log "$1 answered VERSION with: $out"
	return 1
}

check_conflist() {
	if command -v jq >/dev/null 2>&1; then
		jq -e '(.name | type == "string") and (.plugins | type == "array")
			and any(.plugins[]; .type == "zonenet")' "$1" >/dev/null 2>&1 || {
			log "$1 is not a conflist with a zonenet plugin"
			return 1
		}
		return 0
	fi
	# Without jq, at least refuse an empty or unrelated file.
	grep -q '"type"[[:space:]]*:[[:space:]]*"zonenet"' "$1" || {
		log "$1 has no \"type\": \"zonenet\" plugin"
		return 1
	}
}

[ -x "$ZONENET_SRC_DIR/zonenet" ] || die "no plugin binary at $ZONENET_SRC_DIR/zonenet"
mkdir -p "$CNI_BIN_DIR" "$CNI_NET_DIR" || die "create $CNI_BIN_DIR or $CNI_NET_DIR"

stage "$CNI_BIN_DIR/zonenet"
cp "$ZONENET_SRC_DIR/zonenet" "$tmp" || die "copy the plugin to $tmp"
commit "$CNI_BIN_DIR/zonenet" 0755 check_plugin
log "installed $CNI_BIN_DIR/zonenet"

# Staged in net.d, not /tmp: the image's root file system may be read-only.
dst_conf="$CNI_NET_DIR/$CNI_CONF_NAME"
stage "$dst_conf"
if [ -n "$CNI_NETWORK_CONFIG" ]; then
	printf '%s\n' "$CNI_NETWORK_CONFIG" >"$tmp" || die "write $tmp"
elif [ -s "$CNI_CONF_TEMPLATE" ]; then
	cp "$CNI_CONF_TEMPLATE" "$tmp" || die "copy $CNI_CONF_TEMPLATE to $tmp"
else
	die "no network config: set CNI_NETWORK_CONFIG or provide $CNI_CONF_TEMPLATE"
fi
if cmp -s "$tmp" "$dst_conf" && check_conflist "$dst_conf"; then
	# Rewriting an identical file would only make runtimes reload it.
	rm -f "$tmp"
	tmp=""
	log "$dst_conf is up to date"
else
	commit "$dst_conf" 0644 check_conflist
	log "wrote $dst_conf"
fi

if [ "$once" = 1 ]; then
	exit 0
fi
sleeper=""
trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM INT
log "done; sleeping until terminated"
while :; do
	sleep 3600 &
	sleeper=$!
	wait "$sleeper" || true
done
