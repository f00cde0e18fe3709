#!/bin/bash
# Runs every end-to-end script (or those named) and ends with "N passed, N failed".
#
#   test/e2e/run-all.sh                 setup, build, then cnitool ctr cri podman one after another
#   test/e2e/run-all.sh -j              the same, all scripts at once (they share nothing)
#   test/e2e/run-all.sh cri podman      only these
#
# ZONENET_BIN=DIR uses prebuilt binaries; ZONENET_E2E_SKIP_SETUP=1 skips setup.sh.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH:/usr/local/go/bin"
ALL=(cnitool ctr cri podman)
parallel=0
scripts=()
for a in "$@"; do
	case $a in
	-j) parallel=1 ;;
	-h | --help)
		sed -n '2,8p' "$0"
		exit 0
		;;
	*)
		[ -x "$HERE/$a.sh" ] || { echo "run-all: no test/e2e/$a.sh" >&2; exit 2; }
		scripts+=("$a")
		;;
	esac
done
[ ${#scripts[@]} -gt 0 ] || scripts=("${ALL[@]}")
now_ms() { date +%s%3N; }
T0=$(now_ms)
secs() { local d=$1; printf '%d.%01d s' $((d / 1000)) $((d % 1000 / 100)); }

abort() { # everything counts as failed
	echo "run-all: $*" >&2
	echo "0 passed, ${#scripts[@]} failed"
	exit 1
}

if [ "${ZONENET_E2E_SKIP_SETUP:-}" != 1 ]; then
	t=$(now_ms)
	"$HERE/setup.sh" || abort "setup.sh failed"
	echo "run-all: setup $(secs $(($(now_ms) - t)))"
fi

TMP=$(mktemp -d /tmp/zne2e-run-all.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
if [ -z "${ZONENET_BIN:-}" ] && [ "${ZONENET_E2E_PLUGIN:-zonenet}" = zonenet ]; then
	t=$(now_ms)
	(cd "$REPO_ROOT" && go build -o "$TMP/bin/zonenet" ./cmd/zonenet) || abort "go build ./cmd/zonenet failed"
	(cd "$REPO_ROOT" && go build -o "$TMP/bin/zonenetctl" ./cmd/zonenetctl) ||
		echo "run-all: WARNING: go build ./cmd/zonenetctl failed; lease assertions will be skipped" >&2
	export ZONENET_BIN=$TMP/bin
	echo "run-all: built zonenet in $(secs $(($(now_ms) - t)))"
fi

declare -A RC=() DUR=()
if [ $parallel = 1 ]; then
	declare -A PID=()
	for s in "${scripts[@]}"; do
		(
			t=$(now_ms)
			"$HERE/$s.sh" >"$TMP/$s.log" 2>&1
			rc=$?
			echo $(($(now_ms) - t)) >"$TMP/$s.ms"
			exit $rc
		) &
		PID[$s]=$!
	done
	for s in "${scripts[@]}"; do
		wait "${PID[$s]}"
		RC[$s]=$?
		DUR[$s]=$(cat "$TMP/$s.ms" 2>/dev/null || echo 0)
	done
	for s in "${scripts[@]}"; do
		echo "==================== $s"
		cat "$TMP/$s.log"
	done
else
	for s in "${scripts[@]}"; do
		echo "==================== $s"
		t=$(now_ms)
		"$HERE/$s.sh" 2>&1
		RC[$s]=$?
		DUR[$s]=$(($(now_ms) - t))
	done
fi

echo "==================== summary"
pass=0 failed=0
for s in "${scripts[@]}"; do
	if [ "${RC[$s]}" = 0 ]; then
		pass=$((pass + 1))
		printf '  PASS  %-8s %s\n' "$s" "$(secs "${DUR[$s]}")"
	else
		failed=$((failed + 1))
		printf '  FAIL  %-8s %s (exit %s)\n' "$s" "$(secs "${DUR[$s]}")" "${RC[$s]}"
	fi
done
echo "  total $(secs $(($(now_ms) - T0)))"
echo "$pass passed, $failed failed"
[ $failed = 0 ]
