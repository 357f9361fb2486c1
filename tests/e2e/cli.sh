#!/bin/bash
# kbridge CLI checks that need no daemon and no root:
#
#   kbridge --(unix socket, nobody listening)--> $tmp/kbridged.sock
#
# usage, exit codes, one-line errors, and that a bad profile fails before any
# daemon could be started (KBRIDGED points at a program that records a start).
# At the end, kbridged (as this user, on a socket of its own, never connected)
# answers raw API requests with bad fields.
set -e
cd "$(dirname "$0")/../.."
kb=${KBRIDGE:-bin/kbridge}
tmp=$(mktemp -d /tmp/kbridge-cli.$$.XXXXXX)
# Profiles made here are private, as kbridge-agent issue makes them (a
# readable one gets a warning line, checked below).
umask 077
kbd_pid=
cleanup() { [[ -z $kbd_pid ]] || kill "$kbd_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

export KBRIDGE_SOCKET=$tmp/kbridged.sock
export KBRIDGED=$tmp/kbridged
printf '#!/bin/sh\ntouch %s/started\nexit 1\n' "$tmp" > "$KBRIDGED"
chmod +x "$KBRIDGED"

pretty() { echo "+ $*" >&2; }
# expect CODE CMD...: run, check the exit code, keep stdout/stderr
expect() {
	local want=$1 rc=0
	shift
	pretty "$@"
	"$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	[[ $rc == "$want" ]] || { echo "exit $rc, wanted $want" >&2; cat "$tmp/err" >&2; return 1; }
}
one_line() { [[ $(wc -l < "$tmp/err") == 1 ]]; }

for c in "" connect status quit version help logs loglevel gather-logs; do
	expect 0 $kb $c --help
	grep -q '^usage: kbridge' "$tmp/out"
done
expect 0 $kb help; grep -q '^usage: kbridge' "$tmp/out"
expect 0 $kb help connect; grep -q -- '--profile' "$tmp/out"
expect 0 $kb version; grep -q '^kbridge ' "$tmp/out"
expect 0 $kb version -o json
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["kbridged"] is None and j["kbridge"] and j["kbridge"] in sys.argv[2], j' "$tmp/out" "$($kb version)"
# -o yaml: the JSON document as YAML (python3's yaml reads it back).
python3 -c 'import yaml' || { echo "python3 yaml (PyYAML) is needed" >&2; exit 1; }
same_doc() { python3 -c 'import json,sys,yaml; a=json.load(open(sys.argv[1])); b=yaml.safe_load(open(sys.argv[2])); assert a == b, (a, b)' "$@"; }
cp "$tmp/out" "$tmp/version.json"
expect 0 $kb version -o yaml; same_doc "$tmp/version.json" "$tmp/out"
[[ $(head -n1 "$tmp/out") == --- ]]
expect 2 $kb version -o xml; one_line
grep -qx "kbridge: version: --output must be text, json or yaml, not 'xml'" "$tmp/err"
expect 2 $kb version -o wide; one_line
grep -qx "kbridge: version: --output must be text, json or yaml, not 'wide'" "$tmp/err"
# Every command's -o error names it ("kbridge: CMD: ", as its other
# errors) and what it accepts (install, with
# options of its own, and a subcommand too).
while IFS='|' read -r c name accepts; do
	expect 2 $kb $c -o xml; one_line
	grep -qx "kbridge: $name: --output must be $accepts, not 'xml'" "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
done <<'EOF2'
install|install|text, json or yaml
install --dry-run|install|text, json or yaml
uninstall|uninstall|text, json or yaml
status|status|text, json or yaml
connect|connect|text, json or yaml
list|list|text, wide, json or yaml
preview list|preview list|text, wide, json or yaml
preview create web|preview create|text, json or yaml
EOF2
# One JSON shape: keys sorted at every depth (JSON and YAML alike).
sorted_doc() {
	python3 -c '
import json, sys, yaml
def check(v, where):
    if isinstance(v, dict):
        assert list(v) == sorted(v), (where, list(v))
        for k, x in v.items():
            check(x, where + "." + k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            check(x, "%s[%d]" % (where, i))
docs = [json.load(open(sys.argv[1]))] if sys.argv[2] == "json" else list(yaml.safe_load_all(open(sys.argv[1])))
for d in docs:
    check(d, "")
' "$tmp/out" "$1"
}
expect 0 $kb version -o json; sorted_doc json
expect 0 $kb install --dry-run -o json; sorted_doc json
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); k=[i["kind"] for i in j["items"]]; assert k[0] == "Namespace" and len(k) > 5, k' "$tmp/out"
expect 0 $kb install --dry-run; sorted_doc yaml
expect 1 $kb status -o json; sorted_doc json

expect 2 $kb; one_line
expect 2 $kb frobnicate; one_line
expect 2 $kb --frobnicate; one_line
expect 2 $kb status --frobnicate; one_line
expect 2 $kb status -o xml; one_line
expect 2 $kb status -o wide; one_line
expect 2 $kb list -o xml; one_line
grep -qx "kbridge: list: --output must be text, wide, json or yaml, not 'xml'" "$tmp/err"
expect 2 $kb status -o; one_line
expect 2 $kb status extra; one_line
expect 2 $kb connect extra; one_line
expect 2 $kb connect --profile x --kubeconfig y; one_line
expect 2 $kb connect -p x --context c; one_line
expect 2 $kb connect --manager-address nope; one_line
expect 2 $kb connect --manager-namespace Bad_NS; one_line
# Without --profile, connect reads the kubeconfig as kubectl does: none at
# all is one line (exit 1) before any daemon could be started.
HOME=$tmp KUBECONFIG= expect 1 $kb connect; one_line
grep -q 'no kubeconfig' "$tmp/err"; [[ ! -e $tmp/started ]]
expect 2 $kb connect -p x --namespace Not_A_Label; one_line
expect 2 $kb help frobnicate; one_line

# Options checked before any daemon is asked: a header value over the
# limit says so (not "CR or LF"); durations, compound ones too.
expect 2 $kb intercept web --port 8080 --http-header "x-dev=$(printf 'a%.0s' {1..1025})"; one_line
grep -qx "kbridge: --http-header x-dev: the value has 1025 characters; at most 1024" "$tmp/err"
expect 2 $kb intercept web --port 8080 --http-header "$(printf 'x-dev=a\rb')"; one_line
grep -q "CR or LF" "$tmp/err"
for d in 0 1x 31d 1h1h 1m2h 30d1s 1h30; do
	expect 2 $kb preview create web --ttl "$d"; one_line
	grep -q -- "--ttl must be a duration" "$tmp/err"
done
# (well formed: refused only for want of a daemon)
for d in 90 1h30m 1d12h 30d 45m30s; do
	expect 1 $kb preview create web --ttl "$d"; one_line
	[[ $(grep -c -- --ttl "$tmp/err") == 0 ]]
done
expect 2 $kb preview remove 'ab/cd'; one_line
expect 1 $kb preview remove http://abc123.preview.example.com/; one_line
grep -q "^kbridge: preview remove failed: " "$tmp/err"
# With -o json|yaml a failure is also {"error": ...}, one line on stdout;
# the exit code and the line on stderr stay.
for f in json yaml; do
	expect 1 $kb preview remove http://abc123.preview.example.com/ -o $f; one_line
	[[ $(wc -l < "$tmp/out") == 1 ]]
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert list(j) == ["error"] and j["error"] == sys.argv[2][len("kbridge: "):], j' "$tmp/out" "$(cat "$tmp/err")"
done
expect 1 $kb list -o json; one_line
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e.startswith("list failed: "), e' "$tmp/out"
expect 2 $kb leave web -o json extra; one_line
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert "unexpected argument" in e, e' "$tmp/out"
# intercept -- CMD: stdout is CMD's, so the error line goes to stderr.
HOME=$tmp KUBECONFIG= expect 1 $kb intercept web --port 8080 -o json -- true; [[ ! -s $tmp/out ]]
tail -n1 "$tmp/err" | python3 -c 'import json,sys; e=json.load(sys.stdin)["error"]; assert e.startswith("intercept failed: "), e'
# (text: nothing on stdout)
expect 1 $kb list; one_line; [[ ! -s $tmp/out ]]
expect 0 $kb completion zsh; grep -q '^#compdef kbridge' "$tmp/out"
expect 0 $kb completion fish; grep -q '^complete -c kbridge' "$tmp/out"
expect 2 $kb completion tcsh; one_line

expect 1 $kb status
[[ $(cat "$tmp/out") == "kbridged: not running" ]]
expect 1 $kb status --output json
python3 -m json.tool "$tmp/out" > /dev/null
grep -q '"not running"' "$tmp/out"
cp "$tmp/out" "$tmp/status.json"
expect 1 $kb status --output yaml; same_doc "$tmp/status.json" "$tmp/out"
expect 0 $kb quit
[[ $(cat "$tmp/out") == "kbridged: not running" ]]

expect 1 $kb connect --profile "$tmp/missing.json"; one_line
grep -q "^kbridge: cannot read profile $tmp/missing.json: No such file" "$tmp/err"
echo 'not json {' > "$tmp/bad.json"
expect 1 $kb connect --profile "$tmp/bad.json"; one_line
grep -q "^kbridge: profile $tmp/bad.json is not valid JSON" "$tmp/err"
[[ ! -e $tmp/started ]]

# A good profile with no daemon starts one; its failure is one line.
# (Only as root: otherwise the start goes through sudo, which may prompt.)
if [[ $(id -u) == 0 ]]; then
	echo '{"manager":"127.0.0.1:1","name":"t"}' > "$tmp/p.json"
	expect 1 $kb connect --profile "$tmp/p.json"; one_line
	[[ -e $tmp/started ]]
	# A profile its group can read: a warning first (it holds the key).
	chmod 0640 "$tmp/p.json"
	expect 1 $kb connect --profile "$tmp/p.json"
	[[ $(wc -l < "$tmp/err") == 2 ]]
	[[ $(head -n1 "$tmp/err") == "kbridge: warning: profile $tmp/p.json is readable by its group (mode 0640): it holds your private key; run 'chmod 600 $tmp/p.json'" ]]
elif [[ ${CI:-} == true || ${KB_STRICT:-} == 1 ]]; then
	echo "not root: the daemon-start check cannot run, and CI=true or KB_STRICT=1 forbids skipping" >&2
	exit 1
else
	echo "SKIP: not root: the daemon-start check did not run (CI=true or KB_STRICT=1 makes this a failure)" >&2
fi

# The sidecar's options are checked before it reads anything.
agent=${KBRIDGE_AGENT:-bin/kbridge-agent}
sc=(sidecar --profile "$tmp/none.json" --workload web --namespace default --listen 127.0.0.1:1 --app 127.0.0.1:2)
expect 0 "$agent" sidecar --help; grep -q -- '--batch-wait-us N' "$tmp/out"
for bad in x -1 10001 5us ""; do
	expect 2 "$agent" "${sc[@]}" --batch-wait-us "$bad"; one_line
	grep -q -- '--batch-wait-us must be 0 to 10000' "$tmp/err"
done

# The daemon's API checks every field itself, before it looks at the session:
# a raw request (not through the CLI, which refuses these too) gets 400 and
# one error line. kbridged runs as this user on a socket of ours, with no
# manager and no network setup (it does neither before a connect).
kbd=${KBRIDGED_BIN:-bin/kbridged}
"$kbd" --socket "$tmp/api.sock" 2>"$tmp/kbd.log" &
kbd_pid=$!
for _ in $(seq 50); do [[ -S $tmp/api.sock ]] && break; sleep 0.1; done
api() { # api METHOD PATH [JSON]: prints the HTTP code; the body in $tmp/api.out
	curl -sS -m 5 -o "$tmp/api.out" -w '%{http_code}' --unix-socket "$tmp/api.sock" \
	    -X "$1" ${3+--data-binary "$3"} "http://kbridged$2"
}
api_err() { python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert sys.argv[2] in e, e' "$tmp/api.out" "$1"; }
pretty "raw API requests"
[[ $(api POST /v1/intercept '{"workload":"web","port":80,"headers":[{"name":"x-dev","value":"a\r\nx-evil: 1"}]}') == 400 ]]
api_err 'headers[0].value'
[[ $(api POST /v1/intercept '{"workload":"web","port":80,"headers":[{"name":"x dev","value":"a"}]}') == 400 ]]
api_err 'headers[0].name'
[[ $(api POST /v1/intercept '{"workload":"web","port":80,"headers":[{"name":"x","value":"a\u0000b"}]}') == 400 ]]
api_err 'NUL'
[[ $(api POST /v1/intercept '{"workload":"web","port":70000}') == 400 ]]; api_err 'port must be'
[[ $(api POST /v1/intercept '{"workload":"Web","port":80}') == 400 ]]; api_err 'workload must be'
[[ $(api POST /v1/intercept '{"workload":"web","port":80,"type":"leave-all"}') == 400 ]]
api_err 'unknown field "type"'
[[ $(api POST /v1/preview/create '{"workload":"web","host":"a\r\nb"}') == 400 ]]; api_err 'host must'
[[ $(api POST /v1/connect '{"profile":{},"namespace":"Bad"}') == 400 ]]; api_err 'namespace must'
[[ $(api GET '/v1/list?namespace=a%0d%0ab') == 400 ]]; api_err 'namespace must'
[[ $(api POST /v1/intercept 'not json') == 400 ]]; api_err 'not a JSON object'
[[ $(api GET /v1/intercept) == 405 ]]
# Well formed: refused only for the missing session.
[[ $(api POST /v1/intercept '{"workload":"web","port":80,"headers":[{"name":"x-dev","value":"alice"}]}') == 503 ]]
[[ $(api GET /v1/status) == 200 ]]
kill "$kbd_pid"; wait "$kbd_pid" || true
kbd_pid=

echo "cli: ok"
