#!/usr/bin/env bash
# System calls a proxied request makes, for the `tower-balancer` binary (`--profile dist`, a
# TOML file with its defaults, one worker) and the hyper floor (benches/src/bin/hyper_floor.rs):
# `strace -f -c` over 1,000 and then 3,000 requests (`h2load --h1 -c 8`), the difference
# divided by 2,000, so start-up and shutdown drop out. Why: the binary's kernel time a request
# is above the floor's in scripts/compare.sh; this tells whether it makes more calls.
# Usage: scripts/syscalls.sh [--check]   (bounded: about a minute after the build; stops what
# it started). --check, as CI runs it: the bench builds CI already made for
# scripts/instructions-check.sh, and a failure when the binary's reads and writes a request
# (recvfrom, sendto, writev, read, write) exceed the floor's by 0.1 or more. Counts, not
# times, so the check holds on any machine; epoll_wait is left out (how many requests one
# wake-up finds depends on timing). It caught a `recvfrom` a request that found nothing:
# 3 reads a request where the floor makes 2.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=no
[ "${1:-}" = --check ] && CHECK=yes
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light h2load:nghttp2-client strace:strace
start_backends
if [ "$CHECK" = yes ]; then
  cargo build -q --profile bench -p tower-balancer-bin -p benches --bin tower-balancer --bin hyper_floor
  BIN=./target/release/tower-balancer FLOOR=./target/release/hyper_floor
else
  cargo build -q --profile dist -p tower-balancer-bin
  cargo build -q --profile perf -p benches --bin hyper_floor
  BIN=./target/dist/tower-balancer FLOOR=./target/perf/hyper_floor
fi
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
per_request() { # name file-for-the-reads-and-writes
  python3 - "$RUNDIR/$1.1000" "$RUNDIR/$1.3000" "$1" "$2" <<'PY'
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
io = sum(v for k, v in rows.items() if k in ("recvfrom", "sendto", "writev", "read", "write"))
print(f"{sys.argv[3]}: {sum(rows.values()):.2f} a request:", ", ".join(f"{k} {v:.2f}" for k, v in sorted(rows.items())))
print(f"{io:.3f}", file=open(sys.argv[4], "w"))
PY
}
for n in 1000 3000; do
  count binary 8291 "$n" "$BIN" --config "$RUNDIR/sc.toml" --workers 1
  count floor 8292 "$n" "$FLOOR" --listen 127.0.0.1:8292 \
    --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 50
done
per_request binary "$RUNDIR/binary.io"
per_request floor "$RUNDIR/floor.io"
echo "reads and writes a request: binary $(cat "$RUNDIR/binary.io"), floor $(cat "$RUNDIR/floor.io")"
if [ "$CHECK" = yes ] && ! awk -v b="$(cat "$RUNDIR/binary.io")" -v f="$(cat "$RUNDIR/floor.io")" \
  'BEGIN { exit !(b < f + 0.1) }'; then
  echo "FAIL: the binary makes more reads and writes a request than the hyper floor" >&2
  exit 1
fi
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')"
