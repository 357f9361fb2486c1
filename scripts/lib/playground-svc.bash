# shellcheck shell=bash
# Services created after `up --k8s` (scripts/playground sync-services):
# what the EndpointSlice controller, kube-proxy and CoreDNS would do, there
# being none. Sourced by scripts/playground; uses its nx/die/alive/kill_pids
# and playground-k8s.bash's k8s_kubectl.
#
# A sync reads Services, Pods and EndpointSlices as the admin and, for every
# Service but the static playground's (up's own rules and records serve
# those: $SERVICES, default/kubernetes, kube-system/kube-dns):
#   - writes the EndpointSlices of a Service with a selector (NAME-sync,
#     managed-by services.playground.kbridge.dev: Running, Ready pods of its
#     namespace, named targetPorts resolved), deletes its own slices whose
#     Service is gone (no garbage collector runs); a Service without a
#     selector keeps the slices its author wrote;
#   - replaces, in one nft transaction, node's table ip playground-services:
#     ClusterIP:port -> endpoint address:port (random choice among several,
#     as kube-proxy; only addresses in 10.244.0.0/16), for pods (cbr0) and
#     node itself; the static table ip playground is never touched;
#   - writes $STATE/node/services.hosts (ClusterIP, or a headless Service's
#     endpoints, as NAME.NS.svc.cluster.local), which node's dnsmasq reads
#     as an addn-hosts file, and sends it SIGHUP when the file changed.
# Syncs are serialized by a lock. The follower (started by up --k8s unless
# KB_PG_SVC_FOLLOW=0) syncs on each burst of Service watch events and every
# 30 s (pods that come or go), in node, in a process group of its own that
# down kills by its PID.

SVC_DIR=$STATE/node/svcsync
SVC_FOLLOW_PID=$STATE/node/svcsync/follow.pid

# node's dnsmasq reads the sync's records (empty until the first sync)
svc_dns_args() {
	[[ -e $STATE/node/services.hosts ]] || : >"$STATE/node/services.hosts"
	echo "--addn-hosts=$STATE/node/services.hosts"
}

# NS/NAME of the Services up's static rules serve
svc_static() {
	local name kns ip port pod
	while read -r name kns ip port pod; do echo "$kns/$name"; done <<<"$SERVICES"
	echo default/kubernetes
	echo kube-system/kube-dns
}

# node itself reaches ClusterIPs, as a node with kube-proxy does: its own
# packets (iif lo) to the service CIDR get a route, so the output hook sees
# and DNATs them; forwarded ones still find none (unreachable at once, as
# before). Idempotent.
svc_node_route() {
	[[ -n $(nx node ip rule show priority 96) ]] && return 0
	nx node ip route replace 10.96.0.0/16 dev cbr0 src "$K8S_NODE_IP" table 96
	nx node ip rule add priority 96 iif lo to 10.96.0.0/16 lookup 96
}

svc_sync() {
	k8s_enabled || die "not up with --k8s"
	local d=$SVC_DIR lock kns name pid summary static
	mkdir -p "$d"
	exec {lock}>"$d/lock"
	flock -w 60 "$lock" || die "sync-services: another sync holds $d/lock"
	k8s_kubectl get services,pods,endpointslices.discovery.k8s.io -A -o json >"$d/objects.json" ||
		die "sync-services: cannot read the API server"
	mapfile -t static < <(svc_static)
	summary=$(python3 "$REPO/scripts/lib/playground-svc.py" "$d" "$K8S_NODE" "$K8S_POD_IP_KEY" \
		"${static[@]}") || die "sync-services: no plan"
	if [[ -s $d/apply.json ]]; then
		k8s_kubectl apply --server-side --force-conflicts --field-manager=services.playground.kbridge.dev \
			-f "$d/apply.json" >/dev/null || die "sync-services: cannot write the EndpointSlices"
	fi
	while read -r kns name; do
		k8s_kubectl -n "$kns" delete endpointslice "$name" --ignore-not-found >/dev/null ||
			die "sync-services: cannot delete EndpointSlice $kns/$name"
	done <"$d/delete.txt"
	nx node nft -f "$d/services.nft" || die "sync-services: nft refused $d/services.nft"
	svc_node_route
	if ! cmp -s "$d/services.hosts" "$STATE/node/services.hosts"; then
		cp "$d/services.hosts" "$STATE/node/services.hosts.new"
		mv -f "$STATE/node/services.hosts.new" "$STATE/node/services.hosts"
		pid=$(pidof_file "$STATE/node/dnsmasq.pid" || true)
		alive "$pid" && kill -HUP "$pid"
	fi
	exec {lock}>&-
	echo "sync-services: $summary"
}

# Service events, one line each, until the watch ends
svc_watch() {
	nx node env KUBECACHEDIR="$K8S/cache" "$K8S_BIN/kubectl" --kubeconfig "$K8S/admin.kubeconfig" \
		--request-timeout=0 get services -A --watch -o name
}

# (bounded: each kubectl has a 20 s request timeout, the lock 60 s; no
# timeout(1), which would leave the follower's process group)
svc_sync_once() {
	"$REPO/scripts/playground" sync-services || echo "sync-services: failed ($(date -u +%T))"
}

# sync-services --follow: the follower's loop (runs in node, its own group)
svc_follow() {
	k8s_enabled || die "not up with --k8s"
	[[ -n ${K8S_BIN:-} ]] || K8S_BIN=$(cat "$K8S/bin")
	local line rc w
	while k8s_enabled; do
		exec {w}< <(svc_watch)
		while k8s_enabled; do
			rc=0
			IFS= read -r -t 30 line <&"$w" || rc=$?
			((rc == 0 || rc > 128)) || break
			# a burst of events is one sync
			while IFS= read -r -t 0.2 line <&"$w"; do :; done
			svc_sync_once
		done
		exec {w}<&-
		sleep 1
	done
}

svc_follow_start() {
	[[ ${KB_PG_SVC_FOLLOW:-1} != 0 ]] || return 0
	mkdir -p "$SVC_DIR"
	setsid ip netns exec "$(ns node)" env KB_PG="$KB_PG" KB_PG_STATE="$STATE" \
		"$REPO/scripts/playground" sync-services --follow </dev/null >>"$SVC_DIR/follow.log" 2>&1 &
	echo $! >"$SVC_FOLLOW_PID"
	disown
}

svc_expected() {
	[[ -e $SVC_FOLLOW_PID ]] && echo "svcsync(node) $SVC_FOLLOW_PID"
	return 0
}

# down: the follower's whole group (its watch and any sync), by its PID
svc_stop() {
	local pid
	pid=$(pidof_file "$SVC_FOLLOW_PID" || true)
	if alive "$pid"; then
		kill -TERM -- "-$pid" 2>/dev/null || true
		kill_pids "$pid"
	fi
	return 0
}
