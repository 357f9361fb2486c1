#!/bin/bash
# README.md's playground session, as printed: every "$ " line of each
# indented block that a "<!-- playground: ..." comment announces runs in
# order, in one bash (so `pg=` and `ws()` carry over), from the top of the
# clone, against this test's own playground (KB_PG). Each must exit 0; a
# README without such a block, or with fewer than 10 lines in it, fails.
set -euo pipefail

KB_PG_PREFIX=kbr
FAIL_LOGS=(ws/kbridged.sock.log manager.log)
. "$(dirname "$0")/common.bash"
cd "$top"
[[ -x bin/kbridge ]] || { echo "not ok - bin/kbridge is missing (make)"; exit 1; }

# The commands: after the marker, the indented block's "    $ " lines,
# until the block ends (a line that is neither indented nor empty).
cmds=$(awk '
	/^<!-- playground:/ { mark = 1; next }
	mark && /^    \$ / { sub(/^    \$ /, ""); print; inblock = 1; next }
	mark && inblock && !/^    / && !/^$/ { mark = 0; inblock = 0 }
' README.md)
count=$(grep -c . <<<"$cmds" || true)
((count >= 10)) || { echo "not ok - README.md has $count playground commands (wanted a marked block of 10 or more)"; exit 1; }

# One script: each command, then its check. A command's own comment
# (after "  # ") is left to bash.
script=$(mktemp /tmp/kbridge-readme.$$.XXXXXX)
cleanup_extra() { rm -f "$script"; }
{
	echo 'set -u'
	i=0
	while IFS= read -r c; do
		i=$((i + 1))
		printf '%s\n' "$c"
		printf 'rc=$?; if ((rc != 0)); then echo "not ok %d - README: %s (exit $rc)"; exit 1; fi\n' \
			"$i" "${c//[\"\$\`\\]/_}"
		printf 'echo "ok %d - README: %s"\n' "$i" "${c//[\"\$\`\\]/_}"
	done <<<"$cmds"
} >"$script"
timeout 300 bash "$script"
n=$count
echo "1..$n"
