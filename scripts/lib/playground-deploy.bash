# shellcheck shell=bash
# scripts/playground follow-deployments [--run] SECONDS NS...: the stand-in
# for the Deployment, ReplicaSet and StatefulSet controllers
# (scripts/lib/playground-deploy.py says what it does and does not), in the foreground for at most SECONDS
# (1 to 3600), as the admin in node. With --run, also the kubelet: each Pod
# it makes runs (scripts/lib/playground-run.py), in a network namespace
# $KB_PG-pN of its own. A test starts it in the background and kills it by
# its PID (the script execs python, so $! is its PID; SIGTERM: its pods'
# processes and namespaces go too). Sourced by scripts/playground; uses
# playground-k8s.bash's K8S paths.
deploy_follow() {
	local secs kns run=0
	[[ ${1:-} == --run ]] && { run=1; shift; }
	secs=${1:-}
	[[ $secs =~ ^[0-9]+$ && $secs -ge 1 && $secs -le 3600 && $# -ge 2 ]] ||
		die "usage: follow-deployments [--run] SECONDS NS..."
	shift
	for kns in "$@"; do
		[[ $kns =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "follow-deployments: bad namespace '$kns'"
	done
	[[ -n ${K8S_BIN:-} ]] || K8S_BIN=$(cat "$K8S/bin" 2>/dev/null) || die "not up with --k8s"
	if ((run)); then
		[[ -x $KB_BIN/kbridge-agent && -x $KB_BIN/kbridge-sidecar ]] || die "build first: make"
		export PG_RUN=1 PG_KB_PG=$KB_PG PG_STATE=$STATE PG_REPO=$REPO KB_BIN
	fi
	exec python3 "$REPO/scripts/lib/playground-deploy.py" "$secs" "$@" -- \
		ip netns exec "$(ns node)" env KUBECACHEDIR="$K8S/cache" "$K8S_BIN/kubectl" \
		--kubeconfig "$K8S/admin.kubeconfig" --request-timeout=20s
}

# down: followers with --run (their pid files; a process is signalled only
# if it is that follower), then what any of them left: their pods'
# processes, by PID, and namespaces
deploy_down() {
	local f pid i d P pids
	for f in "$STATE"/runpods/follower-*.pid; do
		[[ -e $f ]] || continue
		pid=$(pidof_file "$f" || true)
		if [[ -n $pid ]] && running "$pid" &&
			tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "playground-deploy.py"; then
			kill -TERM "$pid" 2>/dev/null || true
			for ((i = 0; i < 100; i++)); do running "$pid" || break; sleep 0.05; done
			running "$pid" && kill -KILL "$pid" 2>/dev/null
		fi
		rm -f "$f"
	done
	for d in "$STATE"/runpods/p*/; do
		[[ -e $d/netns ]] || continue
		P=$(cat "$d/netns")
		[[ $P =~ ^$KB_PG-p[0-9]+$ ]] || continue
		if [[ -e /run/netns/$P ]]; then
			mapfile -t pids < <(ip netns pids "$P" 2>/dev/null)
			((${#pids[@]} == 0)) || kill_pids "${pids[@]}"
			ip netns del "$P"
		fi
		rm -rf "/etc/netns/$P"
	done
	return 0
}
