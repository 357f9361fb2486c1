#!/bin/bash
# kbridge-agent redirect (the injected init container kbridge-redirect for a
# numeric targetPort) with real nftables, in network namespaces this test
# makes (no playground, nothing in the host's namespace): a "pod" namespace
# with an app on N=8080 and a "sidecar" on P=9901 (python3, each answering
# its own name, IPv4 and IPv6), and a "client" namespace joined to it by a
# veth pair (192.0.2.0/30, 2001:db8::/64):
#   - client -> POD:N reaches the sidecar (IPv4 and IPv6); inside the pod
#     127.0.0.1:N, [::1]:N and POD:N still reach the app;
#   - running it again leaves exactly one table; another --to replaces it;
#   - bad arguments: exit 2, one line, the table untouched;
#   - without CAP_NET_ADMIN (a non-root uid, no capabilities): exit 1, one
#     line, no table;
#   - kbridge-sidecar does not link libnftables.
set -euo pipefail
KB_PG_PREFIX=kbrd
FAIL_LOGS=()
. "$(dirname "$0")/common.bash"

AG=$KB_BIN/kbridge-agent
POD=${KB_PG}p CLI=${KB_PG}c
N=8080 P=9901
for t in nft setpriv python3 ss; do
	command -v "$t" >/dev/null || { echo "not ok - $t is missing"; exit 1; }
done
[[ -x $AG ]] || { echo "not ok - no $AG"; exit 1; }
tmp=$(mktemp -d /tmp/kbredirect.XXXXXX)
pids=()
cleanup_extra() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	ip netns del "$POD" 2>/dev/null
	ip netns del "$CLI" 2>/dev/null
	rm -rf "$tmp"
}
inpod() { timeout -k 2 20 ip netns exec "$POD" "$@"; }
incli() { timeout -k 2 20 ip netns exec "$CLI" "$@"; }

ip netns add "$POD"
ip netns add "$CLI"
ip link add "${KB_PG}a" netns "$POD" type veth peer name "${KB_PG}b" netns "$CLI"
inpod ip link set lo up
incli ip link set lo up
inpod ip addr add 192.0.2.1/30 dev "${KB_PG}a"
incli ip addr add 192.0.2.2/30 dev "${KB_PG}b"
inpod ip addr add 2001:db8::1/64 dev "${KB_PG}a" nodad
incli ip addr add 2001:db8::2/64 dev "${KB_PG}b" nodad
inpod ip link set "${KB_PG}a" up
incli ip link set "${KB_PG}b" up

# srv.py PORT NAME: answers NAME to each connection (IPv4 and IPv6).
cat >"$tmp/srv.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
while True:
	c, _ = s.accept()
	c.sendall(sys.argv[2].encode() + b"\n")
	c.close()
PY
# get.py HOST PORT: prints what the server answers
cat >"$tmp/get.py" <<'PY'
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(c.makefile().readline().strip())
PY
ip netns exec "$POD" python3 "$tmp/srv.py" $N app &
pids+=($!)
ip netns exec "$POD" python3 "$tmp/srv.py" $P sidecar &
pids+=($!)
poll 50 eval '[[ -n $(inpod ss -Hltn "sport = :$N") && -n $(inpod ss -Hltn "sport = :$P") ]]'
get() { local ns=$1; shift; timeout -k 2 10 ip netns exec "$ns" python3 "$tmp/get.py" "$@"; }
# the setup itself: without the redirect the client reaches the app
[[ $(get "$CLI" 192.0.2.1 $N) == app && $(get "$CLI" 2001:db8::1 $N) == app ]]
[[ $(get "$CLI" 192.0.2.1 $P) == sidecar ]]
[[ -z $(inpod nft list tables) ]]
ok "the pod's app answers on $N and its sidecar on $P, the client reaches both; no table yet"

# as the init container runs it: root with NET_ADMIN only, no new privileges
out=$(inpod setpriv --no-new-privs --inh-caps=-all --bounding-set=-all,+net_admin \
	"$AG" redirect --port $N --to $P 2>"$tmp/err")
[[ $out == "kbridge-agent: redirect: tcp port $N to $P in this network namespace (table inet kbridge-redirect)" ]] ||
	{ echo "$out"; exit 1; }
[[ ! -s $tmp/err ]]
[[ $(inpod nft list tables) == "table inet kbridge-redirect" ]]
[[ $(get "$CLI" 192.0.2.1 $N) == sidecar ]]
[[ $(get "$CLI" 2001:db8::1 $N) == sidecar ]]
ok "redirect --port $N --to $P with only CAP_NET_ADMIN: exit 0, one line; from the client POD:$N reaches the sidecar (IPv4 and IPv6)"

[[ $(get "$POD" 127.0.0.1 $N) == app ]]
[[ $(get "$POD" ::1 $N) == app ]]
[[ $(get "$POD" 192.0.2.1 $N) == app ]]
[[ $(get "$CLI" 192.0.2.1 $P) == sidecar ]]
ok "inside the pod 127.0.0.1:$N, [::1]:$N and POD:$N still reach the app (what the sidecar dials)"

inpod "$AG" redirect --port $N --to $P >/dev/null
[[ $(inpod nft list tables) == "table inet kbridge-redirect" ]]
[[ $(inpod nft list table inet kbridge-redirect | grep -c redirect) == 2 ]] # the table line, one rule
inpod "$AG" redirect --port=$N --to=9902 >/dev/null
[[ $(inpod nft list tables) == "table inet kbridge-redirect" ]]
[[ $(inpod nft list table inet kbridge-redirect) == *"tcp dport $N redirect to :9902"* ]]
[[ $(inpod nft list table inet kbridge-redirect) != *":$P"* ]]
inpod "$AG" redirect --port $N --to $P >/dev/null
[[ $(get "$CLI" 192.0.2.1 $N) == sidecar ]]
ok "running it again leaves exactly one table with one rule; --to 9902 replaces the rule (and back)"

before=$(inpod nft list ruleset)
bad=0
for args in "" "--port $N" "--to $P" "--port 0 --to $P" "--port 65536 --to $P" "--port 08080 --to $P" \
	"--port $N --to $N" "--port x --to $P" "--port $N --to $P extra" "--port $N --to $P --bogus" \
	"--port $N --port $N --to $P" "--port" "-x"; do
	# shellcheck disable=SC2086 # the words are the arguments
	set +e; inpod "$AG" redirect $args >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
	if [[ $rc != 2 || -s $tmp/out || $(wc -l <"$tmp/err") != 1 ]] ||
		! grep -q "^kbridge-agent: redirect: " "$tmp/err"; then
		echo "redirect $args: exit $rc, stdout '$(cat "$tmp/out")', stderr '$(cat "$tmp/err")'"
		bad=1
	fi
done
((bad == 0))
[[ $(inpod nft list ruleset) == "$before" ]]
out=$(inpod "$AG" redirect --help)
grep -q "^usage: kbridge-agent redirect --port N --to P" <<<"$out"
ok "bad arguments (13 kinds): exit 2, one line on stderr, nothing on stdout, the table untouched; --help shows the usage"

inpod nft delete table inet kbridge-redirect
set +e
inpod setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all --bounding-set=-all \
	"$AG" redirect --port $N --to $P >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
[[ $rc == 1 && ! -s $tmp/out && $(wc -l <"$tmp/err") == 1 ]] ||
	{ echo "exit $rc"; cat "$tmp/out" "$tmp/err"; exit 1; }
grep -q "^kbridge-agent: redirect: cannot redirect tcp port $N to $P: .*Operation not permitted (it needs CAP_NET_ADMIN here)$" "$tmp/err" ||
	{ cat "$tmp/err"; exit 1; }
[[ -z $(inpod nft list tables) ]]
[[ $(get "$CLI" 192.0.2.1 $N) == app ]]
ok "without CAP_NET_ADMIN (uid 65534, no capabilities): exit 1, one line naming the need, no table, the app still answers on $N"

# The lean sidecar stays without it (kbridge-agent alone links libnftables).
[[ -x $KB_BIN/kbridge-sidecar ]]
grep -q 'libnftables\.so' < <(ldd "$AG")
no grep -q 'libnftables\.so' < <(ldd "$KB_BIN/kbridge-sidecar")
ok "kbridge-agent links libnftables, kbridge-sidecar does not"

echo "1..$n"
