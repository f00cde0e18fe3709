# Shared by the benchmark scripts: source it, then call bench_init.
#
#   bench_init NAME "why root is needed" TOOL...
#
# checks root and the tools, sets $repo (the repository) and $tmp (a
# scratch directory), and on exit, Ctrl-C or TERM ends the driver
# ($driver_pid), deletes the namespaces the script listed in $bench_ns and
# every namespace named "$bench_ns_prefix*" (when set), and removes $tmp.
# bench_driver BIN ARGS... runs the driver so that cleanup can end it, and
# returns its exit status.

bench_init() {
	bench_name=$1
	local why=$2
	shift 2
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	if [[ $(id -u) -ne 0 ]]; then
		echo "$bench_name: needs root ($why)" >&2
		exit 1
	fi
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "$bench_name: $tool not found (make setup installs what the benchmarks need)" >&2; exit 1; }
	done
	tmp=$(mktemp -d "/tmp/$bench_name.XXXXXX")
	driver_pid=
	bench_ns=()
	bench_ns_prefix=${bench_ns_prefix:-}
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

bench_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
		kill "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
	# Deleting a namespace takes its bridges, veths, rules and sysctls with
	# it; only this run's namespaces are named here.
	local ns
	for ns in "${bench_ns[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	if [[ -n $bench_ns_prefix ]]; then
		for ns in $(ip netns list | awk '{print $1}' | grep "^$bench_ns_prefix" || true); do
			ip netns del "$ns" 2>/dev/null || true
		done
	fi
	rm -rf "$tmp"
	exit "$rc"
}

bench_driver() {
	"$@" &
	driver_pid=$!
	local rc=0
	wait "$driver_pid" || rc=$?
	driver_pid=
	return "$rc"
}
