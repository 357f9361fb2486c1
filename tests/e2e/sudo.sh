#!/bin/bash
# kbridged started through sudo takes no paths from its caller. Even with a
# loose sudo rule (any arguments), user "nobody" cannot make the root daemon
# replace a root file with its socket, append to a file through a symlink,
# or hand a file to itself:
#
#   nobody --sudo--> kbridged --daemon --socket /tmp/.../victim --log symlink  => refused
#   nobody --sudo--> kbridged --daemon  => /run/kbridge/kbridged.sock (nobody, 600)
#                                          /run/kbridge/kbridged-65534.log (root:nogroup, 640)
#
# nobody reads the log but cannot write it (root's /run is not theirs to
# fill), and 'kbridge connect' shows why a start failed.
#
# The daemon never touches the network here (no connect), and runs in a
# network namespace of its own all the same.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
KB_BIN=${KB_BIN:-$top/bin}
work=$(mktemp -d /tmp/kbsudo.XXXXXX)
rule=/etc/sudoers.d/kbridge-sudo-test-$$
sock=/run/kbridge/kbridged.sock
log=/run/kbridge/kbridged-65534.log
n=0

cleanup() {
	local rc=$?
	set +e
	rm -f "$rule"
	((rc == 0)) || { echo "not ok - failed (rc $rc) after test $n"; tail -n 20 "$log" 2>/dev/null; }
	KBRIDGE_SOCKET=$sock "$KB_BIN/kbridge" quit >/dev/null 2>&1
	KBRIDGE_SOCKET=$work/root/kbridged.sock "$KB_BIN/kbridge" quit >/dev/null 2>&1
	# Only an unfixed daemon listens there.
	KBRIDGE_SOCKET=$work/x/victim "$KB_BIN/kbridge" quit >/dev/null 2>&1
	rm -f "$log"
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT

ok() { n=$((n + 1)); echo "ok $n - $*"; }
as() { # UID CMD... : run CMD as that user, in a network namespace of its own
	local uid=$1; shift
	echo "  [uid $uid] $*" >&2
	unshare --net setpriv --reuid="$uid" --regid=65534 --clear-groups \
		env -u KBRIDGE_SOCKET HOME=/nonexistent PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
same() { # FILE CONTENT : FILE is still a root-owned regular file holding CONTENT
	[[ -f $1 && ! -L $1 && $(stat -c %u "$1") == 0 && $(cat "$1") == "$2" ]]
}

command -v sudo >/dev/null
if [[ -S $sock && $(KBRIDGE_SOCKET=$sock "$KB_BIN/kbridge" status 2>/dev/null) != "kbridged: not running" ]]; then
	echo "a kbridged already serves $sock: not running this test over it" >&2
	exit 1
fi
mkdir -p "$work/bin" "$work/x" "$work/evil"
cp "$KB_BIN/kbridge" "$KB_BIN/kbridged" "$work/bin/"
chmod 755 "$work" "$work/bin" "$work/bin/"* "$work/x"
echo precious >"$work/x/victim"
echo root-only >"$work/x/target"
chmod 644 "$work/x/victim" "$work/x/target"
chown 65534 "$work/evil"
as 65534 ln -s "$work/x/target" "$work/evil/kbridged.log"
# A loose rule, as an admin might write it: any arguments.
echo "nobody ALL=(root) NOPASSWD: $work/bin/kbridged" >"$rule"
chmod 0440 "$rule"
rm -f "$log"
ok "setup: a root file, a symlink of nobody's to another, a sudo rule for kbridged"

rc=0
as 65534 sudo -n "$work/bin/kbridged" --daemon --socket "$work/x/victim" \
	--log "$work/evil/kbridged.log" >"$work/out" 2>&1 || rc=$?
cat "$work/out" >&2
[[ $rc -ne 0 ]]
grep -q "started through sudo" "$work/out"
same "$work/x/victim" precious
same "$work/x/target" root-only
[[ ! -e $sock ]]
ok "sudo kbridged --socket ROOTFILE --log SYMLINK: refused, both files untouched"

for args in "--log $work/evil/kbridged.log" "--owner-uid 0" "--instance other"; do
	rc=0
	# shellcheck disable=SC2086
	as 65534 sudo -n "$work/bin/kbridged" --daemon $args >"$work/out" 2>&1 || rc=$?
	[[ $rc -ne 0 ]] && grep -q "is not accepted" "$work/out"
done
same "$work/x/target" root-only
ok "through sudo --log, --owner-uid and --instance are refused too"

# The start fails (the log's name is taken by a directory): connect says why.
mkdir "$log"
echo '{}' >"$work/profile.json"
chmod 644 "$work/profile.json"
rc=0
as 65534 "$work/bin/kbridge" connect --profile "$work/profile.json" >"$work/out" 2>&1 || rc=$?
cat "$work/out" >&2
rmdir "$log"
[[ $rc -ne 0 ]] && grep -q "cannot open log kbridged-65534.log: Is a directory" "$work/out"
[[ ! -e $sock ]]
ok "kbridge connect through sudo: a failed start shows kbridged's reason"

# A log an older kbridged handed to nobody is replaced, not reused.
echo "old line" >"$log"
chown 65534 "$log"
chmod 600 "$log"
as 65534 sudo -n "$work/bin/kbridged" --daemon
[[ $(stat -c '%F %U %a' "$sock") == "socket nobody 600" ]]
[[ $(stat -c '%F %U %G %a' "$log") == "regular file root nogroup 640" ]]
[[ $(stat -c '%U %a' /run/kbridge) == "root 755" ]]
grep -q "listening on $sock" "$log"
if grep -q "old line" "$log"; then echo "the old log was reused"; exit 1; fi
ok "sudo kbridged --daemon: the socket nobody's (600), the log root's, group nogroup (640)"

as 65534 grep -q "listening on $sock" "$log"
size=$(stat -c %s "$log")
as 65534 sh -c "echo filler >>'$log'" 2>/dev/null && { echo "nobody appended to the log"; exit 1; }
as 65534 sh -c "echo filler >'$log'" 2>/dev/null && { echo "nobody truncated the log"; exit 1; }
[[ $(stat -c %s "$log") == "$size" ]]
unshare --net setpriv --reuid=65533 --regid=65533 --clear-groups cat "$log" >/dev/null 2>&1 &&
	{ echo "another user (another group) read the log"; exit 1; }
ok "nobody reads the log but can neither append to it nor truncate it; another user cannot read it"

as 65534 "$work/bin/kbridge" logs >"$work/out"
grep -qE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z kbridged\[info\] .*listening on $sock" "$work/out"
as 65534 "$work/bin/kbridge" status --output json >"$work/status.json" || true
[[ $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["daemon"]["log"])' "$work/status.json") == "$log" ]]
as 65534 "$work/bin/kbridge" loglevel debug >/dev/null
as 65534 "$work/bin/kbridge" logs --tail 1 | grep -q 'log level debug'
as 65534 sh -c "cd '$work/evil' && TMPDIR='$work/evil' '$work/bin/kbridge' gather-logs -o g.tar.gz" >/dev/null
tar -tzf "$work/evil/g.tar.gz" | grep -qx 'kbridge-logs/kbridged.log'
tar -xzOf "$work/evil/g.tar.gz" kbridge-logs/kbridged.log | grep -q "listening on $sock"
ok "as nobody: kbridge logs reads the root daemon's log (status names it), loglevel, gather-logs"

# (not connected yet: status exits 1)
rc=0; as 65534 "$work/bin/kbridge" status --output json >"$work/status.json" || rc=$?
[[ $rc == 1 ]]
pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["daemon"]["pid"])' "$work/status.json")
[[ $(stat -c %u "/proc/$pid") == 0 ]]
rc=0
as 65533 "$work/bin/kbridge" status >/dev/null 2>"$work/err" || rc=$?
[[ $rc -ne 0 ]] && grep -qi "permission denied" "$work/err"
ok "nobody reaches the root daemon on the default socket; another user cannot"

rc=0
as 65534 sudo -n "$work/bin/kbridged" --daemon >"$work/out" 2>&1 || rc=$?
[[ $rc -ne 0 ]] && grep -q "already serving" "$work/out"
[[ -S $sock ]]
ok "a second start is refused and leaves the running daemon's socket"

as 65534 "$work/bin/kbridge" quit >/dev/null
for _ in $(seq 50); do [[ -e $sock ]] || break; sleep 0.1; done
[[ ! -e $sock ]]
ok "quit removes the socket"

# As root, paths are root's choice, but a symlink or a file at them is not
# followed or replaced either.
mkdir -m 755 "$work/root"
ln -s "$work/x/target" "$work/root/kbridged.sock.log"
rc=0
env -u SUDO_UID "$work/bin/kbridged" --daemon --socket "$work/root/kbridged.sock" \
	--log "$work/root/kbridged.sock.log" >"$work/out" 2>&1 || rc=$?
[[ $rc -ne 0 ]] && grep -q "symbolic link" "$work/out"
rc=0
env -u SUDO_UID "$work/bin/kbridged" --daemon --socket "$work/x/victim" >"$work/out" 2>&1 || rc=$?
[[ $rc -ne 0 ]] && grep -q "not a socket" "$work/out"
same "$work/x/victim" precious
same "$work/x/target" root-only
ok "root: a log path that is a symlink and a socket path that is a file are refused"

# No sudo rule and no terminal: one line saying what to do.
rm -f "$rule"
rc=0
chown 65534 "$work/profile.json" && chmod 600 "$work/profile.json"
as 65534 setsid -w "$work/bin/kbridge" connect --profile "$work/profile.json" >"$work/out" 2>"$work/err" || rc=$?
cat "$work/err" >&2
# (as's own line, "  [uid 65534] ...", aside)
grep -v '^  \[uid' "$work/err" >"$work/out"
[[ $rc == 1 && $(wc -l <"$work/out") == 1 ]]
grep -q "^kbridge: cannot start kbridged as root through sudo (.*): add the sudoers rule 'ALL ALL=(root) NOPASSWD: $work/bin/kbridged --daemon'" "$work/out"
[[ ! -e $sock ]]
ok "no sudo rule, no terminal: sudo -n, and one line naming the rule to add"
echo "1..$n"
