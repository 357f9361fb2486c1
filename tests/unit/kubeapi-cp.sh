#!/bin/bash
# Runs a command (test_kubeapi, which execs this when it finds no server)
# against a real etcd + kube-apiserver on 127.0.0.1, in a temporary
# directory, stopped by PID and removed at exit:
#
#   test_kubeapi --(admin client cert, TokenRequest tokens)--> kube-apiserver
#       127.0.0.1:random (RBAC; configmaps not in the watch cache, so that
#       a watch from a compacted resourceVersion gets 410)  --> etcd
#
# The command gets KB_KUBE_SERVER, KB_KUBE_CA, KB_KUBE_CERT, KB_KUBE_KEY and
# KB_ETCD_URL; if the control plane cannot be had, KB_KUBE_UNAVAILABLE says
# why (the test then fails under CI=true, else skips that part loudly).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../scripts/lib/controlplane.bash
source "$top/scripts/lib/controlplane.bash"
(($#)) || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }

if ! CP_BIN=${KB_CP_BIN:-$("$top/scripts/build-control-plane" 2>/dev/null | tail -n1)} ||
	[[ ! -x $CP_BIN/kube-apiserver || ! -x $CP_BIN/etcd ]]; then
	KB_KUBE_UNAVAILABLE="no test control plane (scripts/build-control-plane)" exec "$@"
fi
CP_DIR=$(mktemp -d /tmp/kb-kubeapi.XXXXXX)
cleanup() {
	local rc=$?
	trap - EXIT
	if ((rc != 0)); then
		for f in "$CP_DIR"/*.log; do
			[[ -f $f ]] && { echo "---- last lines of $(basename "$f")" >&2; tail -n 15 "$f" >&2; }
		done
	fi
	cp_stop
	rm -rf "$CP_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cp_certs
cp_start_etcd
cp_start_apiserver --watch-cache-sizes=configmaps#0
KB_KUBE_SERVER=$CP_API_URL KB_KUBE_CA=$CP_DIR/ca.crt KB_KUBE_CERT=$CP_DIR/admin.crt \
	KB_KUBE_KEY=$CP_DIR/admin.key KB_ETCD_URL=$CP_ETCD_URL "$@"
