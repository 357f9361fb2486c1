# shellcheck shell=bash
# What the playground end-to-end tests share. A test sets KB_PG_PREFIX (and
# FAIL_LOGS, the files under $STATE to show when it fails), then sources this
# after `set -euo pipefail`. It gets its own playground ($KB_PG, $STATE),
# brought down on exit whatever happens, and these helpers:
#   ok TEXT        count a passed check        no CMD     CMD must fail
#   pg NODE CMD    run CMD in a node           poll N CMD retry CMD N times, 0.1 s apart
#   listening NODE PORT                        a TCP listener on PORT in NODE
#   alice CMD / bob CMD                        kbridge as alice (ws) / bob (bob)
#   two_developers SERVER                      playground up, alice and bob connected,
#                                              each running SERVER NAME 8080 locally
#   control_plane                              $bin (and KB_CP_BIN): the cached
#                                              kube-apiserver, kubectl, etcd, kwok
# A test may define cleanup_extra, run first on exit.
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
PG=$top/scripts/playground
export KB_BIN=${KB_BIN:-$top/bin}
export KB_PG=${KB_PG_PREFIX:?}$$
export KB_PG_STATE=/run/kbridge-playground/$KB_PG
STATE=$KB_PG_STATE
n=0

cleanup_extra() { :; }

e2e_cleanup() {
	local rc=$? f
	set +e
	cleanup_extra
	if ((rc != 0)); then
		echo "not ok - failed (rc $rc) after test $n"
		for f in "${FAIL_LOGS[@]}"; do
			echo "--- $f"; tail -n "${FAIL_LINES:-15}" "$STATE/$f" 2>/dev/null
		done
	fi
	"$PG" down >/dev/null 2>&1
	exit $rc
}
trap e2e_cleanup EXIT

ok() { n=$((n + 1)); echo "ok $n - $*"; }
control_plane() {
	bin=$("$top/scripts/build-control-plane" | tail -n1)
	[[ -x $bin/kube-apiserver && -x $bin/kubectl ]] || { echo "not ok - no control plane in '$bin'"; exit 1; }
	export KB_CP_BIN=$bin
}
# "! cmd" does not trip set -e (nor does a failing A in "A && B"); "no cmd" does
no() { ! "$@"; }
# (PG_TIMEOUT=SECONDS bounds each pg command)
pg() { local node=$1; shift; [[ -n ${QUIET:-} ]] || echo "  [$node] $*" >&2; ${PG_TIMEOUT:+timeout -k 5 $PG_TIMEOUT} "$PG" exec "$node" -- "$@"; }
poll() { local i tries=$1; shift; for ((i = 0; i < tries; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
listening() { [[ -n $(pg "$1" ss -Hltn "sport = :$2") ]]; }
alice() { pg ws "$KB_BIN/kbridge" "$@"; }
bob() { pg bob "$KB_BIN/kbridge" "$@"; }
two_developers() {
	"$PG" up >/dev/null
	alice connect --profile "$STATE/alice.json" >/dev/null
	bob connect --profile "$STATE/bob.json" >/dev/null
	"$PG" exec ws -- python3 "$1" alice 8080 >/dev/null 2>&1 &
	"$PG" exec bob -- python3 "$1" bob 8080 >/dev/null 2>&1 &
	poll 50 listening ws 8080
	poll 50 listening bob 8080
}
