#!/bin/bash
# The test control plane that scripts/install-deps builds works: a real
# kube-apiserver (RBAC) on etcd, kubectl, and kwok giving a node and a pod
# their status. Everything on 127.0.0.1, stopped by PID
# (scripts/control-plane-smoke does the work and asserts each step).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=$("$top/scripts/build-control-plane" | tail -n1)
[[ -x $bin/kube-apiserver && -x $bin/kubectl && -x $bin/etcd && -x $bin/kwok ]]
KB_CP_BIN=$bin KB_SMOKE_TIMEOUT=240 "$top/scripts/control-plane-smoke"
echo "ok - control plane smoke test"
