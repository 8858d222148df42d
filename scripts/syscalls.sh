#!/usr/bin/env bash
# System calls a proxied request makes, for the `tower-balancer` binary (`--profile dist`, a
# TOML file with its defaults, one worker) and the hyper floor (benches/src/bin/hyper_floor.rs):
# `strace -f -c` over 1,000 and then 3,000 requests (`h2load --h1 -c 8`), the difference
# divided by 2,000, so start-up and shutdown drop out. Why: the binary's kernel time a request
# is above the floor's in scripts/compare.sh; this tells whether it makes more calls.
# Usage: scripts/syscalls.sh   (bounded: about a minute after the build; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light h2load:nghttp2-client strace:strace
start_backends
cargo build -q --profile dist -p tower-balancer-bin
cargo build -q --profile perf -p benches --bin hyper_floor
binary_toml 8291 >"$RUNDIR/sc.toml"

count() { # name port n command... ; the command is stopped with SIGTERM after the load
  local name=$1 port=$2 n=$3 pid
  shift 3
  timeout 60 strace -f -c -o "$RUNDIR/$name.$n" "$@" >/dev/null 2>&1 &
  pid=$!
  wait_ready "http://127.0.0.1:$port/"
  timeout 60 h2load --h1 -n "$n" -c 8 "http://127.0.0.1:$port/" | grep '^requests:'
  # the traced process, not strace: strace then writes its table and ends
  pkill -TERM -f -- "$RUNDIR/sc.toml|--listen 127.0.0.1:$port" || true
  timeout 20 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
per_request() { # name
  python3 - "$RUNDIR/$1.1000" "$RUNDIR/$1.3000" "$1" <<'PY'
import re, sys
def load(f):
    d = {}
    for line in open(f):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            d[m.group(2)] = int(m.group(1))
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
rows = {k: (b.get(k, 0) - a.get(k, 0)) / 2000 for k in set(a) | set(b)}
rows = {k: v for k, v in rows.items() if abs(v) >= 0.01}
print(f"{sys.argv[3]}: {sum(rows.values()):.2f} a request:", ", ".join(f"{k} {v:.2f}" for k, v in sorted(rows.items())))
PY
}
for n in 1000 3000; do
  count binary 8291 "$n" ./target/dist/tower-balancer --config "$RUNDIR/sc.toml" --workers 1
  count floor 8292 "$n" ./target/perf/hyper_floor --listen 127.0.0.1:8292 \
    --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 50
done
per_request binary
per_request floor
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')"
