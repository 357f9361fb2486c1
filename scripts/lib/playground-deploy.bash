# shellcheck shell=bash
# scripts/playground follow-deployments SECONDS NS...: the stand-in for the
# Deployment and ReplicaSet controllers (scripts/lib/playground-deploy.py
# says what it does and does not), in the foreground for at most SECONDS
# (1 to 3600), as the admin in node. A test starts it in the background and
# kills it by its PID (the script execs python, so $! is its PID). Sourced
# by scripts/playground; uses playground-k8s.bash's K8S paths.
deploy_follow() {
	local secs=${1:-} kns
	[[ $secs =~ ^[0-9]+$ && $secs -ge 1 && $secs -le 3600 && $# -ge 2 ]] ||
		die "usage: follow-deployments SECONDS NS..."
	shift
	for kns in "$@"; do
		[[ $kns =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "follow-deployments: bad namespace '$kns'"
	done
	[[ -n ${K8S_BIN:-} ]] || K8S_BIN=$(cat "$K8S/bin" 2>/dev/null) || die "not up with --k8s"
	exec python3 "$REPO/scripts/lib/playground-deploy.py" "$secs" "$@" -- \
		ip netns exec "$(ns node)" env KUBECACHEDIR="$K8S/cache" "$K8S_BIN/kubectl" \
		--kubeconfig "$K8S/admin.kubeconfig" --request-timeout=20s
}
