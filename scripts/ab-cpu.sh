#!/usr/bin/env bash
# CPU per request (user and kernel, from /proc/PID/stat) and req/s of two or more builds of
# the `tower-balancer` binary and the hyper floor, under `wrk -t1 -c64` against the two
# nginx members of scripts/backends.sh, the builds in turn, `ROUNDS` times (default 4).
# Why: a change whose gain is in kernel time (fewer wakeups) does not show in instruction
# counts, and this shared machine drifts between runs; interleaving the builds round by
# round lets their medians be compared.
# Usage: scripts/ab-cpu.sh BINARY... (e.g. copies of target/release/tower-balancer, built
# with `cargo build --profile bench -p tower-balancer-bin`, before and after a change);
# bounded: about 8 s a build a round; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk curl:curl
start_backends
cargo build -q --profile perf -p benches --bin hyper_floor
binary_toml 8291 >"$RUNDIR/ab.toml"

measure() { # name port command...
  local name=$1 port=$2 pid a b n
  shift 2
  "$@" >/dev/null 2>&1 &
  pid=$!
  wait_ready "http://127.0.0.1:$port/"
  wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null # warm up the pools
  a="$(awk '{print $14, $15}' "/proc/$pid/stat")"
  n="$(wrk -t1 -c64 -d5s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')"
  b="$(awk '{print $14, $15}' "/proc/$pid/stat")"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  # clock ticks (1/100 s) to µs a request
  awk -v a="$a" -v b="$b" -v n="$n" -v name="$name" 'BEGIN {
    split(a, x, " "); split(b, y, " "); u = (y[1] - x[1]) * 10000 / n; s = (y[2] - x[2]) * 10000 / n
    printf "%-40s req/s %6d  CPU µs/request user %5.2f kernel %5.2f total %5.2f\n", name, n / 5, u, s, u + s }'
}

for round in $(seq 1 "${ROUNDS:-4}"); do
  echo "round $round"
  measure "hyper floor" 8290 ./target/perf/hyper_floor --listen 127.0.0.1:8290 \
    --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 12
  for bin in "$@"; do
    measure "$bin" 8291 "$bin" --config "$RUNDIR/ab.toml" --workers 1
  done
done
