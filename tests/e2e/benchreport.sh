#!/bin/bash
# The report module of scripts/bench (scripts/lib/benchreport.py): its
# parsers against recorded wrk, iperf3 and openssl outputs, and the three
# reports from made-up results files. No playground, no root, no load.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../bench"
# -B: no __pycache__ left in scripts/lib or tests/bench
exec python3 -B -m unittest discover -v -s . -p 'test_*.py'
