#!/usr/bin/env bash
# CPU per request (user and kernel, from /proc/PID/stat) and req/s of two or more builds of
# the `tower-balancer` binary with a TLS + HTTP/2 front, under `h2load -c64 -m10` (what
# scripts/compare.sh runs for HTTP/2) against the two nginx members of scripts/backends.sh,
# the builds in turn, `ROUNDS` times (default 4).
# Why: a change to the HTTP/2 path (scripts/instructions-check.sh measures HTTP/1 only) is
# kept only if its cost is measured, and interleaving the builds round by round lets their
# medians be compared on a machine that drifts.
# Usage: scripts/ab-h2.sh BINARY... (e.g. copies of target/release/tower-balancer, built with
# `cargo build --profile bench -p tower-balancer-bin`, before and after a change);
# bounded: about 10 s a build a round; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light h2load:nghttp2-client curl:curl
start_backends
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wso2.com \
  -keyout "$RUNDIR/ab.key" -out "$RUNDIR/ab.crt" 2>/dev/null
binary_toml 8293 "certificate = \"$RUNDIR/ab.crt\"
key = \"$RUNDIR/ab.key\"" >"$RUNDIR/ab-h2.toml"

measure() { # binary
  local pid a b n url=https://127.0.0.1:8293/
  "$1" --config "$RUNDIR/ab-h2.toml" --workers 1 >/dev/null 2>&1 &
  pid=$!
  wait_ready "$url" -k
  h2load -c64 -m10 -D2 "$url" >/dev/null # warm up the pools
  a="$(awk '{print $14, $15}' "/proc/$pid/stat")"
  n="$(h2load -c64 -m10 -D5 "$url" | awk '/^requests:/ {print $8}')"
  b="$(awk '{print $14, $15}' "/proc/$pid/stat")"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  # clock ticks (1/100 s) to µs a request
  awk -v a="$a" -v b="$b" -v n="$n" -v name="$1" 'BEGIN {
    split(a, x, " "); split(b, y, " "); u = (y[1] - x[1]) * 10000 / n; s = (y[2] - x[2]) * 10000 / n
    printf "%-40s req/s %6d  CPU µs/request user %5.2f kernel %5.2f total %5.2f\n", name, n / 5, u, s, u + s }'
}

for round in $(seq 1 "${ROUNDS:-4}"); do
  echo "round $round"
  for bin in "$@"; do measure "$bin"; done
done
