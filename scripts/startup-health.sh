#!/usr/bin/env bash
# How long after its start the binary takes its members for healthy: health probes at their
# defaults (every 5 s, members start down), two nginx members, `/metrics` polled every
# 50 ms until `lb_member_healthy` is 1 for both. Before the first probe went at once, this
# was a whole interval and one more probe, in which panic mode served every member.
# Usage: scripts/startup-health.sh [BINARY]   (default: builds and runs the dist build;
# bounded: 10 s at most; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light curl:curl
BIN="${1:-}"
if [ -z "$BIN" ]; then
  cargo build -q --profile dist -p tower-balancer-bin
  BIN=./target/dist/tower-balancer
fi
start_backends
{
  binary_toml 8392
  printf '\n[balancer.health]\nuri = "/"\n\n[manager]\nlisten = "127.0.0.1:9392"\n'
} >"$RUNDIR/lb.toml"
t0=$(date +%s%N)
"$BIN" --config "$RUNDIR/lb.toml" --workers 1 >/dev/null 2>&1 &
echo $! >"$RUNDIR/lb.pid"
for _ in $(seq 1 200); do
  n=$(curl -s http://127.0.0.1:9392/metrics 2>/dev/null | awk '/^lb_member_healthy/ {s += $NF} END {print s + 0}')
  if [ "$n" = 2 ]; then
    echo "both members healthy $(( ($(date +%s%N) - t0) / 1000000 )) ms after the start"
    exit 0
  fi
  sleep 0.05
done
echo "not both healthy within 10 s" >&2
exit 1
