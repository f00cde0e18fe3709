#!/bin/bash
# Installs what the end-to-end scripts need on a fresh Debian 12 host (root,
# no systemd, no image registry). Idempotent and quick when all is present.
#
#   Debian packages   containerd, runc, podman, the reference CNI plugins, busybox, iptables,
#                     etcd (the cluster tests start their own etcd from /usr/bin/etcd), ...
#   Go tools          cnitool and crictl, built from the Go module proxy
#   images            busybox and pause tarballs, built locally by tools/mkimage
#
# Everything non-Debian goes to $ZONENET_E2E_CACHE (default /var/cache/zonenet-e2e).
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${ZONENET_E2E_CACHE:-/var/cache/zonenet-e2e}
CNITOOL_VERSION=v1.3.0
CRICTL_VERSION=v1.34.0
PACKAGES=(containernetworking-plugins busybox-static containerd runc podman conmon
	iptables ipset iproute2 python3 util-linux procps kmod etcd-server)
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH:/usr/local/go/bin"
t0=$(date +%s%3N)
say() { echo "[setup $(( ($(date +%s%3N) - t0) / 1000 ))s] $*"; }

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }
command -v go >/dev/null || { echo "setup.sh: Go toolchain not found (expected in PATH or /usr/local/go/bin)" >&2; exit 1; }

# 1. Debian packages. policy-rc.d-less hosts would start daemons on install;
#    there is no systemd here and the tests start their own instances anyway.
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# --no-install-recommends keeps netavark/aardvark-dns out: podman must use CNI.
	apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi
say "packages ok"

# br_netfilter makes bridged traffic cross iptables FORWARD, as on real nodes.
modprobe br_netfilter 2>/dev/null || true

# 2. Go tools, pinned.
mkdir -p "$CACHE/bin" "$CACHE/images"
gotool() { # NAME MODULE@VERSION
	local stamp=$CACHE/bin/.$1.version
	if [ -x "$CACHE/bin/$1" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$2" ]; then return 0; fi
	say "go install $2"
	(cd / && GOBIN=$CACHE/bin go install "$2")
	echo "$2" >"$stamp"
}
gotool cnitool "github.com/containernetworking/cni/cnitool@$CNITOOL_VERSION"
gotool crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
say "go tools ok"

# 3. Images. Rebuilt when the tools' sources or busybox change.
stamp=$(cat "$HERE/tools/mkimage/main.go" "$HERE/tools/pause/main.go" /bin/busybox | sha256sum | cut -c1-16)
if [ "$(cat "$CACHE/images/.stamp" 2>/dev/null)" != "$stamp" ] ||
	[ ! -s "$CACHE/images/busybox.tar" ] || [ ! -s "$CACHE/images/pause.tar" ]; then
	say "building images"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$HERE/../.." && CGO_ENABLED=0 go build -o "$tmp/mkimage" ./test/e2e/tools/mkimage &&
		CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/pause" ./test/e2e/tools/pause)
	"$tmp/mkimage" -ref zonenet.test/e2e/busybox:1 -o "$CACHE/images/busybox.tar" -busybox /bin/busybox -cmd /bin/sh
	"$tmp/mkimage" -ref zonenet.test/e2e/pause:1 -o "$CACHE/images/pause.tar" -add "$tmp/pause:/pause" -entrypoint /pause
	echo "$stamp" >"$CACHE/images/.stamp"
fi
say "images ok: $(ls "$CACHE/images" | tr '\n' ' ')"
say "SETUP OK"
