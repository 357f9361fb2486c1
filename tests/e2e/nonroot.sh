#!/bin/bash
# A developer without root: `kbridge connect` starts kbridged through sudo, and
# only that user (and root) may use the daemon's socket.
#
#   ws namespace:  user "nobody" --kbridge--> sudo kbridged (root) --TLS--> manager
#                  uid 65533 -----kbridge--> (socket 0600, owned by nobody): refused
#
# sudo needs a rule for this: the test adds the README's rule, pinned to
# "kbridged --daemon", for the exact kbridged it runs (a copy in a private
# directory) and removes it on exit. Through sudo the daemon's socket is the
# fixed /run/kbridge/kbridged.sock (tests/e2e/sudo.sh tests the paths).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
PG=$top/scripts/playground
KB_BIN=${KB_BIN:-$top/bin}
export KB_PG=kbn$$
export KB_PG_STATE=/run/kbridge-playground/$KB_PG
STATE=$KB_PG_STATE
work=$(mktemp -d /tmp/kbnonroot.XXXXXX)
rule=/etc/sudoers.d/kbridge-test-$$
sock=/run/kbridge/kbridged.sock
log=/run/kbridge/kbridged-65534.log
n=0

cleanup() {
	local rc=$?
	set +e
	rm -f "$rule"
	((rc == 0)) || { echo "not ok - failed (rc $rc) after test $n"; tail -n 30 "$log" 2>/dev/null; }
	"$PG" exec ws -- "$KB_BIN/kbridge" quit >/dev/null 2>&1
	KBRIDGE_SOCKET=$sock "$PG" exec ws -- "$KB_BIN/kbridge" quit >/dev/null 2>&1
	"$PG" down >/dev/null 2>&1
	rm -f "$log"
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT

ok() { n=$((n + 1)); echo "ok $n - $*"; }
as() { # UID CMD... : run CMD in ws as that user
	local uid=$1; shift
	echo "  [ws uid $uid] $*" >&2
	ip netns exec "$KB_PG-ws" setpriv --reuid="$uid" --regid=65534 --clear-groups \
		env -u KBRIDGE_SOCKET HOME=/nonexistent PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

command -v sudo >/dev/null
"$PG" up >/dev/null
# Binaries where "nobody" can run them, whatever the checkout's permissions.
mkdir -p "$work/bin" "$work/home"
cp "$KB_BIN/kbridge" "$KB_BIN/kbridged" "$work/bin/"
chmod 755 "$work" "$work/bin" "$work/bin/"*
install -m 0600 -o nobody "$STATE/alice.json" "$work/home/alice.json"
chown nobody "$work/home"
echo "nobody ALL=(root) NOPASSWD: $work/bin/kbridged --daemon" >"$rule"
chmod 0440 "$rule"
ok "setup: binaries, a profile owned by nobody, a sudo rule for kbridged"

out=$(as 65534 "$work/bin/kbridge" connect --profile "$work/home/alice.json")
[[ $out == *"Connected to 192.168.50.1:8443 as alice"* ]]
ok "nobody: kbridge connect starts kbridged through sudo"

[[ $(stat -c '%U %a' "$sock") == "nobody 600" ]]
pid=$(as 65534 "$work/bin/kbridge" status --output json |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["pid"])')
[[ $(stat -c %u "/proc/$pid") == 0 ]]
ok "the daemon runs as root; its socket belongs to nobody, mode 600"

[[ $(as 65534 curl -sS -m 5 http://web.default/) == "hello from web (cluster)" ]]
ok "nobody reaches cluster services by name"

rc=0
as 65533 "$work/bin/kbridge" status >/dev/null 2>"$work/err" || rc=$?
[[ $rc -ne 0 ]]
grep -qi "permission denied" "$work/err"
ok "another user cannot use the daemon (permission denied)"

as 65534 "$work/bin/kbridge" quit >/dev/null
[[ ! -e $sock ]]
[[ -z $("$PG" exec ws -- nft list tables) ]]
ok "nobody: kbridge quit stops the daemon and leaves no rules"
echo "1..$n"
