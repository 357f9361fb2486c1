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
#   kube_developer [LOCAL]                     the same with the API server: see below
#   term_start CMD                             a terminal (tmux) running CMD: below
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

# Kill the process named by each pid file that exists (its first line);
# for cleanup_extra. Never fails.
kill_pidfiles() {
	local f pid
	for f in "$@"; do
		pid=$(head -n1 "$f" 2>/dev/null | tr -dc 0-9) || continue
		[[ -n $pid ]] && kill "$pid" 2>/dev/null
	done
	return 0
}

e2e_cleanup() {
	local rc=$? f
	set +e
	cleanup_extra
	[[ -z ${term_dir:-} ]] || term_cleanup $rc
	[[ -z ${kube_up:-} ]] || kube_cleanup
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

# kube_developer [LOCAL]: the control plane; a playground with the Kubernetes
# API server (up --k8s) in which the admin ran `kbridge install` and the
# manager's pod runs from that manifest (run-pod; its ports listen); alice
# bound to kbridge-developer (cluster-wide, and in the install namespace)
# and connected with her kubeconfig; with LOCAL, her dev server (devserver.py
# alice LOCAL) listening in ws, $dev. Sets $bin and $K (the kubeconfigs).
# Then:
#   adm ARG...      kubectl as the admin        kb ARG...   kbridge as alice
#   eq A B          A == B, or say what came    json CODE [ARG...]  python on stdin's JSON as j
#   get CURL-ARGS   curl from the api pod (not one of a workload's), 5 s
#   spec_of NAME [KIND]  `kubectl get -o yaml` of a workload (deployment) but
#                   what the API server and controllers change by themselves
#   follow [--run] SECONDS [NS]  scripts/playground follow-deployments in
#                   the background ($follower; its stderr appended to
#                   $STATE/follow.log; NS: default)
# On exit: the follower and the dev server (by PID) and alice's daemon go
# (on failure, the run pods' logs are shown first).
kube_developer() {
	control_plane
	K=$STATE/kube
	kube_up=1 follower= dev=
	KB_PG_NO_MANAGER=1 "$PG" up --k8s >/dev/null
	pg ws "$KB_BIN/kbridge" install --kubeconfig "$K/admin.kubeconfig" >/dev/null
	"$PG" run-pod kbridge kbridge-manager >/dev/null
	poll 100 listening mgr 8443
	poll 100 listening mgr 8444
	adm create clusterrolebinding kbridge-dev-alice --clusterrole=kbridge-developer --user=alice >/dev/null
	adm -n kbridge create rolebinding kbridge-dev-alice --role=kbridge-developer --user=alice >/dev/null
	local out
	out=$(kb connect)
	[[ $out == "Connected to "* ]] || { echo "$out"; exit 1; }
	if [[ -n ${1:-} ]]; then
		pg ws python3 "$here/devserver.py" alice "$1" >/dev/null 2>&1 &
		dev=$!
		poll 50 listening ws "$1"
	fi
}
adm() { "$PG" kubectl "$@"; }
kb() {
	QUIET=1 pg ws env XDG_CACHE_HOME="$STATE/cache-alice" HOME=/nonexistent \
		KUBECONFIG="$K/alice.kubeconfig" "$KB_BIN/kbridge" "$@"
}
eq() { [[ $1 == "$2" ]] || { echo "want '$2', got '$1'"; return 1; }; }
json() { python3 -c 'import json,sys; j=json.load(sys.stdin); '"$1" "${@:2}"; }
get() { QUIET=1 PG_TIMEOUT=10 pg api curl -sS --max-time 5 "$@"; }
spec_of() {
	adm get "${2:-deployment}" "$1" -o yaml |
		awk '/^status:/{exit} !/^  (generation|resourceVersion):/'
}
# app_workload KIND NAME REPLICAS [numeric] [SPEC_LINE...]: the YAML (for
# adm apply) of KIND NAME in namespace default, REPLICAS pods labelled
# app=NAME of the playground's app image, its container port 8080 named http,
# and of Service NAME, port 80 to targetPort http; numeric: the container
# port unnamed and targetPort 8080. Each SPEC_LINE is one more line of the
# workload's spec ("serviceName: db").
app_workload() {
	local kind=$1 name=$2 n=$3 cport='{name: http, containerPort: 8080}'
	local sport='{name: http, port: 80, targetPort: http}'
	shift 3
	if [[ ${1:-} == numeric ]]; then
		cport='{containerPort: 8080}' sport='{port: 80, targetPort: 8080}'
		shift
	fi
	cat <<EOF
---
apiVersion: apps/v1
kind: $kind
metadata: {name: $name, namespace: default}
spec:
  replicas: $n
$(printf '  %s\n' "$@")
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      containers:
      - name: app
        image: playground.kbridge.dev/hello:1
        ports: [$cport]
---
apiVersion: v1
kind: Service
metadata: {name: $name, namespace: default}
spec:
  selector: {app: $name}
  ports: [$sport]
EOF
}
# ready KIND NAME N: the workload has N ready replicas
ready() { [[ $(adm get "$1" "$2" -o 'jsonpath={.status.readyReplicas}') == "$3" ]]; }
# answers N CURL_ARGS...: the different bodies of N requests from the api pod
answers() { local i; for ((i = 0; i < $1; i++)); do get "${@:2}"; echo; done | sort -u | sed '/^$/d'; }
# serves HOST: the app answers at http://HOST/; to_alice HOST: with x-dev: alice,
# alice's dev server does
serves() { [[ $(get "http://$1/") == "hello from "* ]]; }
to_alice() { [[ $(get -H 'x-dev: alice' "http://$1/") == "alice local: GET /" ]]; }
follow() {
	local run=()
	[[ $1 == --run ]] && { run=(--run); shift; }
	"$PG" follow-deployments "${run[@]}" "$1" "${2:-default}" 2>>"$STATE/follow.log" &
	follower=$!
}
kube_cleanup() {
	((${rc:-0} == 0)) || tail -n 12 "$STATE"/runpods/p*/*.log 2>/dev/null
	[[ -n $follower ]] && kill "$follower" 2>/dev/null && wait "$follower" 2>/dev/null
	[[ -n $dev ]] && kill "$dev" 2>/dev/null
	kb quit >/dev/null 2>&1 || true
}

# term_start CMD: a terminal as a user has one, a tmux session (200x40, on
# a socket of this test's own) running CMD (a shell in a node, typically);
# tmux missing fails. Then:
#   pane            the screen             shows RE    the screen matches RE
#   keys KEY...     tmux send-keys to it
#   run CMD         clear the screen, then type CMD; echo EXIT=$? and Enter
#   between         the screen's lines between the command ("$ CMD") and
#                   EXIT=, blank ones left out     status   the N of EXIT=N
# On exit the tmux server goes (the screen shown first if the test failed).
term_start() {
	command -v tmux >/dev/null || { echo "not ok - tmux is not installed (scripts/install-deps)"; exit 1; }
	term_dir=$(mktemp -d /tmp/kbterm.$$.XXXXXX)
	chmod 755 "$term_dir"
	T=(tmux -S "$term_dir/tmux.sock" -f /dev/null)
	"${T[@]}" new-session -d -s t -x 200 -y 40 "$1"
	"${T[@]}" set-option -t t remain-on-exit on >/dev/null
}
term_cleanup() {
	((${1:-0} == 0)) || { echo "--- the terminal"; pane 2>/dev/null; }
	"${T[@]}" kill-server 2>/dev/null
	rm -rf "$term_dir"
}
pane() { "${T[@]}" capture-pane -p -t t; }
shows() { pane | grep -qE -- "$1"; }
keys() { "${T[@]}" send-keys -t t "$@"; }
run() {
	keys clear Enter
	poll 50 eval '[[ $(pane | grep -c .) == 1 ]]'
	"${T[@]}" clear-history -t t
	keys "$*; echo EXIT=\$?" Enter
}
between() { pane | sed -n '/^\$ ./,/^EXIT=/p' | sed '1d;$d' | grep -v '^\s*$' || true; }
status() { pane | sed -n 's/^EXIT=//p'; }

# Headless chromium in a node's namespace, bounded; its whole process group
# is killed afterwards. chrome NODE OUTFILE CHROMIUM-ARGS... (stdout to OUTFILE)
chrome() {
	local node=$1 out=$2 ud pid rc=0
	shift 2
	ud=$(mktemp -d "$STATE/chrome.XXXXXX")
	echo "  [$node] chromium $*" >&2
	timeout -k 5 45 ip netns exec "$KB_PG-$node" chromium --headless --no-sandbox \
		--disable-gpu --disable-dev-shm-usage --disable-quic --no-first-run \
		--no-default-browser-check --disable-background-networking \
		--disable-component-update --disable-sync --disable-features=HttpsUpgrades \
		--user-data-dir="$ud" --virtual-time-budget=5000 "$@" \
		</dev/null >"$out" 2>>"$ART/chromium.log" &
	pid=$!
	wait "$pid" || rc=$?
	# timeout leads its own process group: whatever chromium left behind goes too
	kill -KILL -- "-$pid" 2>/dev/null || true
	rm -rf "$ud"
	return "$rc"
}
