#!/bin/bash
# DNS as the cluster answers it: what one lookup through `kbridge connect`
# costs the cluster's DNS server (the node's dnsmasq, 10.96.0.10, logging
# every query with KB_PG_DNS_LOG=1).
#
#   ws: dig @127.0.0.53 --redirect--> kbridged --TLS--> manager 10.244.0.10
#                                                          --> dnsmasq 10.96.0.10 (query log)
#
# Every name the daemon takes for the cluster's (NAME, NAME.NS, NAME.NS.svc,
# the full name) costs exactly one query there, of the absolute name, where
# the manager pod's search list (ndots:5) would cost up to four; a name the
# cache holds costs none. Other types come back as the cluster DNS answers
# them: SRV, TXT, PTR for a service address, a CNAME with its chain.
# KB_BIN selects the binaries; with KB_SAN=1 (the sanitizer build) no
# sanitizer report may appear in the daemon's and the manager's logs.
set -euo pipefail

KB_PG_PREFIX=kbd
FAIL_LOGS=(ws/kbridged.sock.log manager.log node/dnsmasq.log)
FAIL_LINES=30
. "$(dirname "$0")/common.bash"
export KB_PG_DNS_LOG=1

mgr_ip=10.244.0.10
ws() { pg ws "$@"; }
# The queries the manager has made to the cluster DNS, one "TYPE NAME" a line.
mgr_queries() {
	sed -n "s/.*query\[\([A-Z]*\)\] \([^ ]*\) from $mgr_ip\$/\1 \2/p" "$STATE/node/dnsmasq.log"
}
count() { mgr_queries | wc -l; }
# asked TYPE NAME ABS WANT: dig through kbridge answers WANT (the answer
# section's data, NXDOMAIN, or FAIL: not NOERROR) and the cluster DNS got
# exactly one more query from the manager: TYPE of the absolute name ABS.
asked() { # TYPE NAME ABS WANT
	local before out i
	before=$(count)
	out=$(ws dig +tries=1 +time=4 "$2" "$1" @127.0.0.53)
	if [[ $4 == NXDOMAIN ]]; then
		[[ $out == *"status: NXDOMAIN"* ]]
	elif [[ $4 == FAIL ]]; then
		[[ $out == *"status: "* && $out != *"status: NOERROR"* ]]
	else
		[[ $out == *"status: NOERROR"* ]]
		[[ $(awk '/ANSWER SECTION/ { f = 1; next } /^$/ { f = 0 } f { print $NF }' \
		    <<<"$out") == "$4" ]]
	fi
	# dnsmasq writes its log as it answers; give it a moment
	for ((i = 0; i < 20; i++)); do (($(count) > before)) && break; sleep 0.05; done
	sleep 0.2
	[[ $(count) == $((before + 1)) ]] || {
		echo "# $1 $2: $(($(count) - before)) queries:"; mgr_queries | tail -n 5; return 1; }
	[[ $(mgr_queries | tail -n 1) == "$1 $3" ]]
}

[[ -x $KB_BIN/kbridge && -x $KB_BIN/kbridged && -x $KB_BIN/kbridge-agent ]]
"$PG" up >/dev/null
pg ws "$KB_BIN/kbridge" connect --profile "$STATE/alice.json" >/dev/null
ok "playground up (cluster DNS logs queries), alice connected"

asked A web.default web.default.svc.cluster.local 10.96.1.1
ok "NAME.NS: one query, of NAME.NS.svc.cluster.local"
before=$(count)
[[ $(ws dig +short web.default.svc.cluster.local A @127.0.0.53) == 10.96.1.1 ]]
[[ $(ws dig +short web A @127.0.0.53) == 10.96.1.1 ]]
sleep 0.2
[[ $(count) == "$before" ]]
ok "the same name typed in full or as a single label: from the cache, no query"

asked A cart.shop.svc cart.shop.svc.cluster.local 10.96.2.1
asked A api api.default.svc.cluster.local 10.96.1.2
asked A echo.default.svc.cluster.local echo.default.svc.cluster.local 10.96.1.3
asked AAAA web.default web.default.svc.cluster.local ""
ok "NAME.NS.svc, NAME (connected namespace), the full name, AAAA: one query each"

asked A nosuch.default.svc.cluster.local nosuch.default.svc.cluster.local NXDOMAIN
# (NAME.NS the cluster lacks goes on to the outside resolver, which has no
# upstream here: REFUSED)
asked A nosuch.shop nosuch.shop.svc.cluster.local FAIL
ok "a name the cluster does not have: one query, NXDOMAIN"

# Other record types, through the manager (it answers "records"), each one
# query too: the answers as the cluster DNS gives them, named as asked.
answer() { awk '/ANSWER SECTION/ { f = 1; next } /^$/ { f = 0 } f { $2 = ""; print }' <<<"$1"; }
before=$(count)
out=$(ws dig +tries=1 +time=4 _http._tcp.web.default.svc.cluster.local SRV @127.0.0.53)
[[ $(answer "$out") == "_http._tcp.web.default.svc.cluster.local.  IN SRV 0 0 80 web.default.svc.cluster.local." ]]
out=$(ws dig +tries=1 +time=4 web.default TXT @127.0.0.53)
[[ $(answer "$out") == 'web.default.  IN TXT "kbridge playground"' ]]
out=$(ws dig +tries=1 +time=4 -x 10.96.1.1 @127.0.0.53)
[[ $(answer "$out") == "1.1.96.10.in-addr.arpa.  IN PTR web.default.svc.cluster.local." ]]
sleep 0.2
[[ $(count) == $((before + 3)) ]]
ok "SRV, TXT (NAME.NS), PTR of a service address: the cluster's records, one query each"

out=$(ws dig +tries=1 +time=4 ext.default A @127.0.0.53)
[[ $(answer "$out") == "ext.default.  IN CNAME web.default.svc.cluster.local.
web.default.svc.cluster.local.  IN A 10.96.1.1" ]]
[[ $(ws getent hosts ext.default) == "10.96.1.1"*"web.default.svc.cluster.local"* ]]
[[ $(ws curl -sS -m 5 http://ext.default/) == "hello from web (cluster)" ]]
ok "an ExternalName-like CNAME: answered with the chain; getent and curl follow it"

# the name of an address outside the cluster's subnets is not asked there
before=$(count)
ws dig +tries=1 +time=4 -x 192.0.2.1 @127.0.0.53 >/dev/null || true
sleep 0.2
[[ $(count) == "$before" ]]
ok "PTR outside the cluster's subnets: not the cluster's"

# For comparison: the same lookup from a pod, through its search list.
before=$(count)
direct=$(pg web dig +search +tries=1 +short web.default A | tail -n 1)
sleep 0.2
nq=$(grep -c "query\[A\] web.default.* from 10.244.1.10\$" "$STATE/node/dnsmasq.log" || true)
echo "# a pod's own lookup of web.default (search list, ndots:5): $nq queries, answer $direct"
[[ $direct == 10.96.1.1 && $nq -ge 2 && $(count) == "$before" ]]
ok "a pod's search list costs $nq queries for what kbridge asks in one"

pg ws "$KB_BIN/kbridge" quit >/dev/null
if [[ -n ${KB_SAN:-} ]]; then
	no grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$STATE"/ws/kbridged.sock.log "$STATE"/manager*.log
	ok "no sanitizer reports in the daemon and manager logs"
fi
echo "1..$n"
