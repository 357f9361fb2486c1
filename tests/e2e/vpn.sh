#!/bin/bash
# kbridge connect beside a VPN and overlapping networks, in the playground
# (scripts/playground; cluster subnets 10.96.0.0/16 services, 10.244.0.0/16
# pods). Everything this test adds lives in the playground's ws namespace or
# in a namespace of its own ($KB_PG-lan); nothing touches the host's.
#
#   ws: vpn0 (veth, its peer in ws too) routing exactly 10.244.0.0/16, like
#       a VPN that routes the cluster's pod subnet; then dock0 with address
#       10.244.0.1/16, like a docker bridge (the kernel's prefix route);
#   ws: lan0 10.96.200.1/24 --veth-- $KB_PG-lan: eth0 10.96.200.2/24, an
#       HTTP server ("hello from lan"): a LAN inside the service subnet;
#   ws: lan1 10.96.1.254/24 --veth-- $KB_PG-lan2: eth0 10.96.1.1/24, the
#       address of the service web.default (VNAT).
#
# Checks: connect works beside the VPN's route; cluster traffic goes through
# kbridge (route and answers) while every route of the other links stays
# byte-identical (ip -j route show table all, before and after), during the
# session, after quit and after SIGKILL; status names the overlaps;
# --never-proxy (flag and profile) keeps the LAN reachable and the rest of
# the cluster works; the workstation's own address in a cluster range stays
# local; with the LAN 10.96.1.0/24 kept local, 10.96.1.1 reaches the LAN
# host while web.default resolves to a virtual address that reaches the
# service (PTR gives the name back), routes unchanged after quit and
# SIGKILL; bad ranges fail with one line and leave nothing.
set -euo pipefail

KB_PG_PREFIX=kbv
FAIL_LOGS=(ws/kbridged.sock.log manager.log)
FAIL_LINES=40
. "$(dirname "$0")/common.bash"
LAN=$KB_PG-lan
LAN2=$KB_PG-lan2
bg_pids=()
cleanup_extra() {
	local p n
	for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null; done
	for n in "$LAN" "$LAN2"; do
		[[ -e /run/netns/$n ]] || continue
		for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null; done
		ip netns del "$n"
	done
}

ws() { pg ws "$@"; }
kb() { ws "$KB_BIN/kbridge" "$@"; }
fails() { ! "$@" >/dev/null 2>&1; }
gone() { [[ ! -e /proc/$1/status ]] || grep -q '^State:.*Z' "/proc/$1/status"; }
daemon_pid() { kb status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["pid"])'; }
no_kbridge() { [[ -z $(ws nft list tables) ]] && ! ws ip -o link show | grep -q kbridge; }
web() { [[ $(ws curl -sS -m 5 "$1") == "hello from web (cluster)" ]]; }
# The routes of every table but those on kbridge's link (and IPv6 link-local
# ones), as one sorted JSON text.
routes() {
	QUIET=1 ws ip -j route show table all | python3 -c '
import json, sys
# IPv6 link-local routes come and go with address autoconfiguration.
r = [x for x in json.load(sys.stdin) if not x.get("dev", "").startswith("kbridge")
     and not x.get("dst", "").startswith(("fe80:", "ff00:"))]
print(json.dumps(sorted(r, key=lambda x: json.dumps(x, sort_keys=True)), sort_keys=True))'
}
routes_as_before() {
	local now; now=$(routes)
	[[ $now == "$before" ]] && return 0
	diff <(echo "$before" | python3 -m json.tool) <(echo "$now" | python3 -m json.tool) >&2 || true
	return 1
}
# No route through kbridge's link (no route at all is fine: no default route here).
not_via_kbridge() { ! QUIET=1 ws ip route get "$1" 2>/dev/null | grep -q "dev kbridge"; }
first_dev() { QUIET=1 ws ip route get "$1" | sed -n 's/.* dev \([^ ]*\).*/\1/p;q'; }
status_json() { kb status --output json >"$STATE/vpn-status.json"; }
jq_py() { python3 -c "import json,sys; s=json.load(open('$STATE/vpn-status.json')); $1"; }

for t in python3 curl ip nft; do
	command -v "$t" >/dev/null || { echo "not ok - $t is missing"; exit 1; }
done
[[ -x $KB_BIN/kbridge && -x $KB_BIN/kbridged && -x $KB_BIN/kbridge-agent ]]
"$PG" up >/dev/null
ok "playground up"

# --- a VPN-like link routing exactly the pod subnet
ws ip link add vpn0 type veth peer name vpn0p
ws ip link set vpn0 up
ws ip link set vpn0p up
ws ip route add 10.244.0.0/16 dev vpn0 metric 0
before=$(routes)
[[ $before == *'"dst": "10.244.0.0/16"'* ]]
[[ $(first_dev 10.244.1.10) == vpn0 ]]
ok "a VPN link vpn0 routes exactly 10.244.0.0/16 (the cluster's pod subnet)"

out=$(kb connect --profile "$STATE/alice.json")
[[ $out == *"Connected to 192.168.50.1:8443 as alice"* ]]
[[ $out == *"10.244.0.0/16 overlaps 10.244.0.0/16 on vpn0"* ]]
ok "connect works beside the VPN and names the overlap"

[[ $(first_dev 10.244.1.10) == kbridge* ]]
[[ $(QUIET=1 ws ip route show 10.244.0.0/16 | head -n1) == *"dev kbridge"* ]]
[[ $(QUIET=1 ws ip route show 10.244.0.0/16 | grep -c "dev vpn0") -eq 1 ]]
web http://10.244.1.10/
web http://web.default/
[[ $(ws curl -sS -m 5 http://10.244.2.10/) == "hello from cart (cluster)" ]]
routes_as_before
ok "cluster traffic goes through kbridge; the VPN's route is still there, byte-identical"

status_json
jq_py '
o = [x for x in s["overlaps"] if x["link"] == "vpn0"]
assert o == [{"subnet": "10.244.0.0/16", "route": "10.244.0.0/16", "link": "vpn0", "never_proxy": False}], s
assert s["proxied"] == ["10.96.0.0/16", "10.244.0.0/16"], s
assert s["never_proxy"] == [] and s["also_proxy"] == [], s'
[[ $(kb status) == *"10.244.0.0/16 overlaps 10.244.0.0/16 on vpn0"* ]]
ok "status (text and json) lists the proxied ranges and the overlap with vpn0"

kb quit >/dev/null
poll 30 no_kbridge
routes_as_before
[[ $(first_dev 10.244.1.10) == vpn0 ]]
ok "after quit every route of the other links is exactly as before"

kb connect --profile "$STATE/alice.json" >/dev/null
web http://10.244.1.10/
pid=$(daemon_pid)
kill -KILL "$pid"
poll 30 gone "$pid"
poll 30 no_kbridge
poll 30 routes_as_before
[[ $(first_dev 10.244.1.10) == vpn0 ]]
ok "after SIGKILL every route of the other links is exactly as before"

# A VPN that comes up while connected (its route appended behind ours, as
# the kernel does for an address's prefix route) goes untouched at quit too.
kb connect --profile "$STATE/alice.json" >/dev/null
ws ip route append 10.96.0.0/16 dev vpn0p
before=$(routes)
web http://web.default/
kb quit >/dev/null
poll 30 no_kbridge
routes_as_before
ws ip route del 10.96.0.0/16 dev vpn0p
ws ip link del vpn0
ok "a same-prefix route added during the session survives quit unchanged"

# --- a docker-like bridge whose own address's prefix is exactly the pod subnet
ws ip link add dock0 type veth peer name dock0p
ws ip link set dock0 up
ws ip link set dock0p up
ws ip addr add 10.244.0.1/16 dev dock0
before=$(routes)
[[ $before == *'"dev": "dock0"'*'"dst": "10.244.0.0/16"'* || $before == *'"dst": "10.244.0.0/16"'*'"dev": "dock0"'* ]]
out=$(kb connect --profile "$STATE/alice.json")
[[ $out == *"10.244.0.0/16 overlaps 10.244.0.0/16 on dock0"* ]]
web http://10.244.1.10/
[[ $(first_dev 10.244.1.10) == kbridge* ]]
routes_as_before
pid=$(daemon_pid)
kill -KILL "$pid"
poll 30 gone "$pid"
poll 30 no_kbridge
poll 30 routes_as_before
[[ $(first_dev 10.244.1.10) == dock0 ]]
ws ip link del dock0
ok "a bridge's own prefix route (proto kernel) equal to the pod subnet: kbridge goes first, the route is unchanged after SIGKILL"

# --- a LAN inside the service subnet
ip netns add "$LAN"
ip link add lan0 netns "$KB_PG-ws" type veth peer name eth0 netns "$LAN"
ip -n "$LAN" link set lo up
ip -n "$LAN" link set eth0 up
ip -n "$LAN" addr add 10.96.200.2/24 dev eth0
ws ip addr add 10.96.200.1/24 dev lan0
ws ip link set lan0 up
mkdir -p "$STATE/lan" "$STATE/wsown"
echo "hello from lan" >"$STATE/lan/index.html"
echo "hello from ws itself" >"$STATE/wsown/index.html"
ip netns exec "$LAN" python3 -m http.server 80 --bind 10.96.200.2 --directory "$STATE/lan" >/dev/null 2>&1 &
bg_pids+=($!)
"$PG" exec ws -- python3 -m http.server 8099 --bind 10.96.200.1 --directory "$STATE/wsown" >/dev/null 2>&1 &
bg_pids+=($!)
poll 50 ws curl -sS -m 1 http://10.96.200.2/
poll 50 ws curl -sS -m 1 http://10.96.200.1:8099/
before=$(routes)
[[ $(ws curl -sS -m 5 http://10.96.200.2/) == "hello from lan" ]]
ok "a LAN 10.96.200.0/24 (inside the service subnet) with a server at 10.96.200.2"

# Without --never-proxy: the overlap is named; ws's own address stays local.
out=$(kb connect --profile "$STATE/alice.json")
[[ $out == *"10.96.0.0/16 overlaps 10.96.200.0/24 on lan0"* ]]
[[ $(ws curl -sS -m 5 http://10.96.200.1:8099/) == "hello from ws itself" ]]
web http://10.96.1.1/
routes_as_before
kb quit >/dev/null
poll 30 no_kbridge
ok "overlap named at connect; the workstation's own address in a cluster range stays its own"

out=$(kb connect --profile "$STATE/alice.json" --never-proxy 10.96.200.0/24)
[[ $out == *"10.96.0.0/16 overlaps 10.96.200.0/24 on lan0 (kept local: never-proxy)"* ]]
[[ $(ws curl -sS -m 5 http://10.96.200.2/) == "hello from lan" ]]
[[ $(first_dev 10.96.200.2) == lan0 ]]
[[ $(first_dev 10.96.201.1) == kbridge* ]]
web http://10.96.1.1/
web http://web.default/
web http://10.244.1.10/
routes_as_before
ok "--never-proxy 10.96.200.0/24: the LAN host answers, the rest of the cluster works"

status_json
jq_py '
assert s["never_proxy"] == ["10.96.200.0/24"], s
p = s["proxied"]
assert "10.244.0.0/16" in p and "10.96.0.0/16" not in p and "10.96.200.0/24" not in p, s
assert "10.96.0.0/17" in p and "10.96.201.0/24" in p, s
assert {"subnet": "10.96.0.0/16", "route": "10.96.200.0/24", "link": "lan0", "never_proxy": True} in s["overlaps"], s'
st=$(kb status)
[[ $st == *"never proxied:"*"10.96.200.0/24"* && $st == *"(kept local: never-proxy)"* ]]
ok "status shows never-proxy, the proxied ranges around it, and the overlap kept local"

# Connecting again with other ranges is refused; the same ones are fine.
fails kb connect --profile "$STATE/alice.json"
kb connect --profile "$STATE/alice.json" --never-proxy 10.96.200.0/24 >/dev/null
pid=$(daemon_pid)
kill -KILL "$pid"
poll 30 gone "$pid"
poll 30 no_kbridge
poll 30 routes_as_before
[[ $(ws curl -sS -m 5 http://10.96.200.2/) == "hello from lan" ]]
ok "after SIGKILL the LAN's routes are unchanged and it answers"

# The same from the profile (ranges for that cluster), plus --also-proxy.
python3 -c '
import json, sys
p = json.load(open(sys.argv[1])); p["never_proxy"] = ["10.96.200.0/24"]
json.dump(p, open(sys.argv[2], "w"))' "$STATE/alice.json" "$STATE/alice-lan.json"
kb connect --profile "$STATE/alice-lan.json" --also-proxy 172.31.77.0/24 >/dev/null
[[ $(ws curl -sS -m 5 http://10.96.200.2/) == "hello from lan" ]]
web http://web.default/
[[ $(first_dev 172.31.77.1) == kbridge* ]]
status_json
jq_py '
assert s["never_proxy"] == ["10.96.200.0/24"] and s["also_proxy"] == ["172.31.77.0/24"], s
assert "172.31.77.0/24" in s["proxied"], s'
kb quit >/dev/null
poll 30 no_kbridge
routes_as_before
ok "never_proxy from the profile; --also-proxy routes another range through kbridge"

# --- VNAT: a LAN 10.96.1.0/24 whose host 10.96.1.1 has web.default's address
ip netns add "$LAN2"
ip link add lan1 netns "$KB_PG-ws" type veth peer name eth0 netns "$LAN2"
ip -n "$LAN2" link set lo up
ip -n "$LAN2" link set eth0 up
ip -n "$LAN2" addr add 10.96.1.1/24 dev eth0
ws ip addr add 10.96.1.254/24 dev lan1
ws ip link set lan1 up
mkdir -p "$STATE/lan2"
echo "hello from the lan host 10.96.1.1" >"$STATE/lan2/index.html"
ip netns exec "$LAN2" python3 -m http.server 80 --bind 10.96.1.1 --directory "$STATE/lan2" \
	>/dev/null 2>&1 &
bg_pids+=($!)
lanhost() { [[ $(ws curl -sS -m 5 "$1") == "hello from the lan host 10.96.1.1" ]]; }
poll 50 lanhost http://10.96.1.1/
before=$(routes)
ok "a LAN 10.96.1.0/24 whose host 10.96.1.1 has the address of the service web.default"

a_of() { QUIET=1 ws dig +short +tries=1 +time=4 "$1" A @127.0.0.53; }
ptr_of() { QUIET=1 ws dig +short +tries=1 +time=4 -x "$1" @127.0.0.53; }
in_pool() { python3 -c 'import ipaddress,sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' "$1" "$2"; }
out=$(kb connect --profile "$STATE/alice.json" --never-proxy 10.96.1.0/24)
[[ $out == *"10.96.0.0/16 overlaps 10.96.1.0/24 on lan1 (kept local: never-proxy)"* ]]
[[ $out == *"virtual subnet:"*"100.64.0.0/16 for 10.96.1.0/24"* ]]
lanhost http://10.96.1.1/
[[ $(first_dev 10.96.1.1) == lan1 ]]
virt=$(a_of web.default)
in_pool "$virt" 100.64.0.0/16
[[ $(a_of web.default.svc.cluster.local) == "$virt" ]]
[[ $(QUIET=1 ws getent hosts web.default) == "$virt "* ]]
[[ $(first_dev "$virt") == kbridge* ]]
web http://web.default/
web "http://$virt/"
[[ $(ptr_of "$virt") == web.default.svc.cluster.local. ]]
ok "10.96.1.1 reaches the LAN host; web.default resolves to $virt and reaches the service; its PTR names it"

# Other cluster addresses are untouched; a second name gets its own address;
# an unmapped virtual address is refused and has no name.
[[ $(a_of cart.shop) == 10.96.2.1 ]]
[[ $(ws curl -sS -m 5 http://cart.shop/) == "hello from cart (cluster)" ]]
virt2=$(a_of api.default)
in_pool "$virt2" 100.64.0.0/16
[[ $virt2 != "$virt" && $(a_of web.default) == "$virt" ]]
[[ $(ws curl -sS -m 5 http://api.default/) == "hello from api (cluster)" ]]
fails ws curl -sS -m 5 http://100.64.0.250/
[[ $(QUIET=1 ws dig +tries=1 +time=4 -x 100.64.0.250 @127.0.0.53) == *"status: NXDOMAIN"* ]]
ok "other cluster addresses stay real; api.default gets $virt2; an unmapped virtual address is refused, NXDOMAIN"

status_json
VIRT=$virt VIRT2=$virt2 jq_py '
import os
v = s["vnat"]
assert v["subnet"] == "100.64.0.0/16" and v["translated"] == ["10.96.1.0/24"], v
assert v["used"] == 2 and v["cap"] == 4096, v
assert {"virtual": os.environ["VIRT"], "real": "10.96.1.1", "name": "web.default.svc.cluster.local"} in v["map"], v
assert {"virtual": os.environ["VIRT2"], "real": "10.96.1.2", "name": "api.default.svc.cluster.local"} in v["map"], v
assert "100.64.0.0/16" in s["proxied"], s'
st=$(kb status)
[[ $st == *"virtual subnet:  100.64.0.0/16 for 10.96.1.0/24 (2 of 4096 used)"* ]]
[[ $st == *"$virt -> 10.96.1.1 web.default.svc.cluster.local"* ]]
routes_as_before
ok "status (text and json) shows the virtual subnet and its mappings; other links' routes unchanged"

kb quit >/dev/null
poll 30 no_kbridge
routes_as_before
not_via_kbridge "$virt"
lanhost http://10.96.1.1/
ok "after quit every route of the other links is as before; the virtual range's route is gone"

kb connect --profile "$STATE/alice.json" --never-proxy 10.96.1.0/24 --virtual-subnet 100.99.0.0/24 >/dev/null
virt=$(a_of web.default)
[[ $virt == 100.99.0.1 ]]
web http://web.default/
lanhost http://10.96.1.1/
pid=$(daemon_pid)
kill -KILL "$pid"
poll 30 gone "$pid"
poll 30 no_kbridge
poll 30 routes_as_before
not_via_kbridge 100.99.0.1
lanhost http://10.96.1.1/
ok "--virtual-subnet 100.99.0.0/24 is used; after SIGKILL every route of the other links is as before"

# off: names resolve as they are (to the LAN host here).
kb connect --profile "$STATE/alice.json" --never-proxy 10.96.1.0/24 --virtual-subnet off >/dev/null
[[ $(a_of web.default) == 10.96.1.1 ]]
lanhost http://web.default/
status_json
jq_py 'assert s["vnat"] == {"off": True}, s; assert not any(p.startswith("100.") for p in s["proxied"]), s'
fails kb connect --profile "$STATE/alice.json" --never-proxy 10.96.1.0/24
kb quit >/dev/null
poll 30 no_kbridge
routes_as_before
ok "--virtual-subnet off: names keep their real addresses; another setting while connected is refused"

# The same from the profile (never_proxy and virtual_subnet for that cluster).
python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
p["never_proxy"] = ["10.96.1.0/24"]; p["virtual_subnet"] = "100.98.0.0/24"
json.dump(p, open(sys.argv[2], "w"))' "$STATE/alice.json" "$STATE/alice-vnat.json"
kb connect --profile "$STATE/alice-vnat.json" >/dev/null
[[ $(a_of web.default) == 100.98.0.1 ]]
web http://web.default/
lanhost http://10.96.1.1/
kb quit >/dev/null
poll 30 no_kbridge
routes_as_before
ok "never_proxy and virtual_subnet from the profile"

# A virtual subnet over a route of the workstation: refused, nothing left.
rc=0
QUIET=1 kb connect --profile "$STATE/alice.json" --never-proxy 10.96.1.0/24 \
	--virtual-subnet 10.96.200.0/24 >/dev/null 2>"$STATE/vnat-err" || rc=$?
sed 's/^/# /' "$STATE/vnat-err"
[[ $rc -ne 0 && $(wc -l <"$STATE/vnat-err") -eq 1 ]]
grep -q "virtual subnet 10.96.200.0/24 overlaps 10.96.200.0/24 (a route on lan0)" "$STATE/vnat-err"
kb quit >/dev/null 2>&1 || true
poll 30 no_kbridge
routes_as_before
ok "a virtual subnet over the workstation's own routes is refused; nothing is left"

# --- bad ranges: one line, nothing left behind
errs=$STATE/vpn-err
expect_fail() { # STATUS PATTERN CMD...
	local want=$1 pat=$2 rc=0; shift 2
	QUIET=1 "$@" >/dev/null 2>"$errs" || rc=$?
	[[ $rc -eq $want ]] || { echo "exit $rc, want $want: $*"; cat "$errs"; return 1; }
	[[ $(wc -l <"$errs") -eq 1 ]] || { cat "$errs"; return 1; }
	grep -qi -- "$pat" "$errs" || { cat "$errs"; return 1; }
	no_kbridge
}
expect_fail 2 "not a CIDR" kb connect --profile "$STATE/alice.json" --never-proxy 10.96.0.1/16
expect_fail 2 "not a CIDR" kb connect --profile "$STATE/alice.json" --never-proxy 10.96.0.0
expect_fail 2 "127.0.0.0/8" kb connect --profile "$STATE/alice.json" --also-proxy 127.0.0.0/8
expect_fail 2 "every address" kb connect --profile "$STATE/alice.json" --also-proxy 0.0.0.0/0
expect_fail 2 "twice" kb connect --profile "$STATE/alice.json" --also-proxy 10.1.0.0/16 --also-proxy 10.1.0.0/16
expect_fail 2 "virtual-subnet" kb connect --profile "$STATE/alice.json" --virtual-subnet 100.64.0.1/16
expect_fail 2 "/8 to /30" kb connect --profile "$STATE/alice.json" --virtual-subnet 100.64.0.0/31
expect_fail 1 "holds 10.96.200.1, an address of lan0" \
	kb connect --profile "$STATE/alice.json" --also-proxy 10.96.192.0/18
routes_as_before
ok "bad ranges and an also-proxy over ws's own address: one line each, nothing left"

if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/ws/kbridged.sock.log "$STATE"/manager*.log
	ok "no sanitizer reports in the daemon and manager logs"
fi
echo "1..$n"
