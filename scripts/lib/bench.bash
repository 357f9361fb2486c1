# shellcheck shell=bash
# The shared part of the benchmarks in scripts/benchmarks/: options, the
# playground's bring-up and teardown, background processes stopped by PID,
# process figures from /proc, machine info, configuration templates, and the
# call of the report module (scripts/lib/benchreport.py).
#
# A benchmark sources this file, calls
#   bench_init NAME PG_PREFIX KB_NODE "TOOLS" "$@"
# (NAME: connect/intercept/h2/preview/portforward/k8sconnect/kintercept; KB_NODE: the workstation whose kbridged
# it drives), then pg_up, its phases (rec MODE KEY VALUE... into $RES), and
# bench_finish REPORT_ARGS... which prints the report benchreport.py makes.
# Safety: everything runs in the namespaces of our own playground ($KB_PG)
# and on loopback; background processes are stopped by PID; the playground is
# removed on exit, even on failure.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG=$REPO/scripts/playground
BENCH_D=$REPO/scripts/benchmarks
TEMPLATES=$BENCH_D/templates
BENCHREPORT=$REPO/scripts/lib/benchreport.py

bench_usage() {
	cat <<USAGE
usage: scripts/bench connect|intercept|h2|preview|portforward|k8sconnect|kintercept|dns|team [--quick]

  connect   compare kbridge connect with the direct path, stunnel (TLS 1.3),
            sshuttle and two plain TCP relays without TLS (HAProxy mode tcp,
            the floor); prints a table and writes build/bench-connect.json
  intercept compare the kbridge sidecar (with another user's header intercept
            active) with HAProxy and nginx as header-routing proxies and with
            the app alone, plus requests through an intercept to a
            workstation and, as the floor, through three plain TCP relays
            where kbridge's hops are; prints a table and writes
            build/bench-intercept.json
  h2        HTTP/2 without TLS (h2c, prior knowledge, h2load) routed by
            header: the sidecar (bob's header intercept active, every stream
            routed) vs HAProxy (proto h2, a backend for bob's header) vs the
            app alone; writes build/bench-h2.json
  preview   from the teammate's namespace: the manager's preview listener
            (to the app, not intercepted) vs straight to the service and vs
            HAProxy as the same hop; writes build/bench-preview.json
  portforward
            bulk throughput (a download, an echo both ways) through kbridge
            port-forward vs kubectl port-forward to the same pod port, over
            the playground's kube-apiserver (--k8s); writes
            build/bench-portforward.json
  k8sconnect
            kbridge connect with only a kubeconfig (the manager pod reached
            through the API server's port-forward) to the first request:
            cold (a new CSR) and warm (the cached certificate), where the
            time goes, kubectl port-forward to the manager as a reference;
            then portforward's rounds in the same playground; writes
            build/bench-k8sconnect.json
  kintercept
            kbridge intercept on a Deployment run by the playground (numeric
            targetPort: the webhook's redirect and sidecar) from no sidecar
            to the first intercepted request, kbridge's part vs the pod
            restart's; wrk through the injected sidecar vs HAProxy in the
            same pod; then intercept (the hand-run sidecar) for its ratio;
            writes build/bench-kintercept.json
  dns       cluster DNS lookups (A, answered from kbridge's cache, and TXT,
            every one through the tunnel) via kbridge vs straight to the
            cluster's DNS: lookups/s, p50/p99, and the cluster DNS server's
            queries per lookup from its query log; writes build/bench-dns.json
  team      a hand-run manager on loopback (no playground) serving 1,000
            idle daemon sessions and 100 sidecars: memory per session,
            PING and control round trips, then 10,000 intercepts and 1,024
            previews and requests through the preview listener; writes
            build/bench-team.json (KB_BASE_BIN=DIR: the same with another
            build's kbridge-agent, for comparison)
  --quick   dns: 2 s per run instead of 5;
            connect: ~2 s per measurement instead of ~5 s;
            intercept, h2, preview, portforward: 2 rounds of 2 s instead of 5
            rounds of 4 s; k8sconnect: 3 connect rounds instead of 10;
            kintercept: 3 intercept rounds instead of 5, wrk as intercept's

environment:
  KB_PG     playground name (default kbbench<pid> / kbbi<pid> / kbbp<pid>;
            must not exist yet)
  KB_BIN    directory with kbridge, kbridged, kbridge-agent (default <repo>/bin;
            they are copied first so a parallel rebuild cannot disturb a run)

Each benchmark is a script in scripts/benchmarks/ (scripts/bench NAME runs it).
USAGE
}

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

declare -A BG=() # name -> pid of our background processes
KBD_PID=
PG_STARTED=0
TMP=

# bench_init NAME PG_PREFIX KB_NODE TOOLS ARGS...: options, checks, $TMP with
# a copy of the binaries, the results file, the exit trap
bench_init() {
	CMD=$1 KB_NODE=$3
	local prefix=$2 tools=$4 t b nofile
	shift 4
	QUICK=0
	while (($#)); do
		case $1 in
		--quick) QUICK=1 ;;
		-h | --help) bench_usage; exit 0 ;;
		*) bench_usage >&2; exit 2 ;;
		esac
		shift
	done
	[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
	for t in $tools; do
		command -v "$t" >/dev/null || die "missing $t (scripts/install-deps)"
	done
	PY=/usr/bin/python3
	[[ -x $PY ]] || PY=$(command -v python3) || die "missing python3"
	SRC_BIN=${KB_BIN:-$REPO/bin}
	for b in kbridge kbridged kbridge-agent; do
		[[ -x $SRC_BIN/$b ]] || die "$SRC_BIN/$b not found: build first: make"
	done
	export KB_PG=${KB_PG:-$prefix$$}
	export KB_PG_STATE=${KB_PG_STATE:-/run/kbridge-playground/$KB_PG}
	STATE=$KB_PG_STATE
	[[ -e /run/netns/$KB_PG-ws || -e /run/netns/$KB_PG-bob || -e /run/netns/$KB_PG-node || -e $STATE ]] &&
		die "playground $KB_PG already exists; pick another KB_PG"

	# Many idle connections: kbridged and the manager inherit this limit.
	nofile=$(ulimit -Hn)
	[[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
	ulimit -n "$nofile"
	NOFILE=$nofile

	TMP=$(mktemp -d /tmp/kbbench.$$.XXXXXX)
	chmod 755 "$TMP"
	RES=$TMP/results # lines: MODE KEY VALUE...
	mkdir -p "$TMP/bin"
	cp "$SRC_BIN"/{kbridge,kbridged,kbridge-agent} "$TMP/bin/"
	# the lean sidecar binary kbridge-agent sidecar runs when it is there
	[[ ! -x $SRC_BIN/kbridge-sidecar ]] || cp "$SRC_BIN"/kbridge-sidecar "$TMP/bin/"
	echo "env binaries $(date -u -r "$SRC_BIN/kbridged" +%FT%TZ) (kbridge-agent $(date -u -r "$SRC_BIN/kbridge-agent" +%FT%TZ)) sha256 kbridged $(sha256sum "$TMP/bin/kbridged" | cut -c1-12) kbridge-agent $(sha256sum "$TMP/bin/kbridge-agent" | cut -c1-12)" >"$RES"
	export KB_BIN=$TMP/bin
	KB=$TMP/bin/kbridge
	OUT_JSON=$REPO/build/bench-$CMD.json
	LOG_DIR=$REPO/build/bench-$CMD-logs
	SOCK=$STATE/$KB_NODE/kbridged.sock
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

nx() { local n=$1; shift; ip netns exec "$KB_PG-$n" "$@"; }
kb() { KBRIDGE_SOCKET=$SOCK nx "$KB_NODE" "$KB" "$@"; }
rec() { echo "$*" >>"$RES"; }
now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000)) | awk '{printf "%.1f", $1 / 1000}'; }

# ---------------------------------------------------------------- processes
running() {
	local st
	read -r st 2>/dev/null <"/proc/$1/stat" || return 1
	st=${st##*) }
	[[ -n $st && ${st:0:1} != [ZX] ]]
}

# bg_start NAME NODE LOG CMD...: run CMD in NODE in its own session
bg_start() {
	local name=$1 n=$2 log=$3; shift 3
	setsid ip netns exec "$KB_PG-$n" "$@" </dev/null >>"$log" 2>&1 &
	BG[$name]=$!
}

# bg_stop NAME: TERM the process, then its process group; KILL after 5 s
bg_stop() {
	local name=$1 pid i
	pid=${BG[$name]:-}
	[[ -n $pid ]] || return 0
	unset "BG[$name]"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do running "$pid" || break; sleep 0.1; done
	kill -TERM -- "-$pid" 2>/dev/null || true
	if running "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# wrk_bg NODE OUT SECS ARGS...: wrk in the background as BG[wrk], bounded in
# time; the sh around it appends "kbbench-wrkstat <its /proc stat>" once wrk
# is reaped, so its cutime/cstime are wrk's CPU time
wrk_bg() {
	local n=$1 out=$2 secs=$3; shift 3
	bg_start wrk "$n" "$out" timeout $((secs + 10)) sh -c \
		'wrk "$@"; rc=$?; read -r l </proc/$$/stat; echo "kbbench-wrkstat $l"; exit $rc' sh "$@"
}

bench_cleanup() {
	local rc=$? name
	trap - EXIT INT TERM
	for name in "${!BG[@]}"; do bg_stop "$name"; done
	if ((PG_STARTED)); then
		if [[ -S $SOCK ]]; then timeout 10 env KBRIDGE_SOCKET="$SOCK" \
			ip netns exec "$KB_PG-$KB_NODE" "$KB" quit >/dev/null 2>&1 || true; fi
		if [[ -n $KBD_PID ]] && running "$KBD_PID"; then kill -TERM "$KBD_PID" 2>/dev/null || true; fi
		save_logs
		"$PG" down >/dev/null 2>&1 || echo "bench: playground down failed" >&2
	fi
	[[ -n $TMP ]] && rm -rf "$TMP"
	exit "$rc"
}

# save_logs: the daemons' logs into build/bench-NAME-logs/, plus what the
# benchmark's save_logs_extra adds
save_logs() {
	mkdir -p "$LOG_DIR"
	cp -f "$STATE/$KB_NODE/kbridged.sock.log" "$LOG_DIR/kbridged.log" 2>/dev/null || true
	cp -f "$STATE/manager.log" "$LOG_DIR/manager.log" 2>/dev/null || true
	cp -f "$TMP"/*.log "$LOG_DIR/" 2>/dev/null || true
	if declare -F save_logs_extra >/dev/null; then save_logs_extra; fi
	return 0
}

# save_wrk_logs: the wrk outputs of every round
save_wrk_logs() {
	rm -rf "$LOG_DIR/wrk"; mkdir -p "$LOG_DIR/wrk"
	cp -f "$TMP"/wrk/*.out "$LOG_DIR/wrk/" 2>/dev/null || true
}

wait_listen() { # NODE PORT
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -n $(nx "$1" ss -Hltn "sport = :$2") ]] && return 0
		sleep 0.05
	done
	return 1
}

children() { ps -o pid= --ppid "$1" 2>/dev/null | awk '{printf "%s%s", s, $1; s = " "}' || true; }
comm_of() { cat "/proc/$1/comm" 2>/dev/null || echo '?'; }
pidof_file_b() { [[ -s $1 ]] && head -n1 "$1" | tr -dc 0-9; }

kbd_pid() {
	kb status -o json 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["pid"])' 2>/dev/null || true
}
kb_streams() {
	kb status -o json 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("streams"))' 2>/dev/null || echo null
}

# ---------------------------------------------------------------- /proc figures
rss_kib() { # PID [FIELD] -> VmRSS (or FIELD, e.g. RssAnon) in kB, or null
	local v
	v=$(awk -v f="${2:-VmRSS}:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null) || true
	echo "${v:-null}"
}

# cpu_ticks PID...: user+system clock ticks of these processes (all threads)
cpu_ticks() {
	local p t=0 v
	for p in "$@"; do
		v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || true
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# ctx_switches PID...: voluntary context switches (the times they slept)
ctx_switches() {
	local p t=0 v
	for p in "$@"; do
		v=$(awk '$1 == "voluntary_ctxt_switches:" {print $2}' "/proc/$p/status" 2>/dev/null) || true
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# host_busy: "busy,total" clock ticks of the whole machine (all CPUs)
host_busy() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6 "," t; exit}' /proc/stat; }

# ---------------------------------------------------------------- templates
# render TEMPLATE OUT KEY=VALUE...: scripts/benchmarks/templates/TEMPLATE with
# every @KEY@ replaced by VALUE, written to OUT; a placeholder left over is
# a bug in the benchmark, not something to run with
render() {
	local name=$1 out=$2 text kv
	local tpl=$TEMPLATES/$name
	shift 2
	text=$(<"$tpl") || die "template $tpl missing"
	for kv in "$@"; do
		text=${text//"@${kv%%=*}@"/"${kv#*=}"}
	done
	[[ $text =~ @[A-Z_]+@ ]] && die "template $name: ${BASH_REMATCH[0]} not substituted"
	printf '%s\n' "$text" >"$out"
}

# nginx_conf DIR HTTP_TEMPLATE KEY=VALUE...: a foreground nginx (1 worker)
# whose files all live in DIR, with HTTP_TEMPLATE's server blocks
nginx_conf() {
	local d=$1 http=$2
	shift 2
	mkdir -p "$d/tmp"
	render "$http" "$d/http.part" "$@"
	render nginx.conf "$d/nginx.conf" "DIR=$d" "HTTP=$(<"$d/http.part")"
	rm -f "$d/http.part"
}

# ---------------------------------------------------------------- run
# machine_info: CPU model and one core's AES-128-GCM figure (what TLS costs
# here), for the report's header
machine_info() {
	local model aes=null
	model=$(awk -F': *' '$1 ~ /^model name/ {print $2; exit}' /proc/cpuinfo)
	if command -v openssl >/dev/null; then
		aes=$(timeout 20 openssl speed -seconds 1 -bytes 16384 -evp aes-128-gcm 2>/dev/null |
			"$PY" "$BENCHREPORT" openssl-speed) || aes=null
	fi
	rec env machine "${model:-?}|$aes"
}

# pg_up: machine info, the load average before, our playground
pg_up() {
	machine_info
	rec env load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
	say "playground $KB_PG up${1:+ ($1)}"
	PG_STARTED=1
	"$PG" up >"$TMP/playground-up.log" 2>&1 || { cat "$TMP/playground-up.log" >&2; die "playground up failed"; }
}

# bench_finish REPORT_ARGS...: the load average after, the logs, the report
bench_finish() {
	rec env load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
	save_logs
	echo
	"$PY" "$BENCHREPORT" "$CMD" "$RES" "$OUT_JSON" "$@"
	echo
	echo "JSON: ${OUT_JSON#"$REPO"/}; logs: ${LOG_DIR#"$REPO"/}/"
}

# wrk_field FILE FIELD: one figure of a wrk output for progress lines
wrk_field() { "$PY" "$BENCHREPORT" wrk "$1" "$2"; }
