#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: unlike req/s on a shared
# machine, the count repeats run after run, so a change to the forwarding path can be judged
# by it. Two nginx backends on loopback, examples/lb_bench (built with `--profile perf`, as
# scripts/compare.sh builds it) under `valgrind --tool=callgrind`, wrk -t1 -c8 for 10 s,
# plain and then the whole sticky stack with the route cookie sent.
# Usage: scripts/instructions.sh   (bounded: about a minute after the build; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk valgrind:valgrind
start_backends
cargo build -q --profile perf -p tower-balancer-proxy --example lb_bench
LB=./target/perf/examples/lb_bench

count() { # name port [--sticky]
  local name=$1 port=$2 sticky=${3:-}
  valgrind --tool=callgrind --callgrind-out-file="$RUNDIR/cg.$port" \
    $LB --listen 127.0.0.1:"$port" --member 127.0.0.1:9763 --member 127.0.0.1:9764 \
    --threads 1 --per-core $sticky --seconds 16 >"$RUNDIR/out.$port" 2>/dev/null &
  local pid=$!
  sleep 4
  local cookie=() reqs ir
  if [ -n "$sticky" ]; then cookie=(-H "Cookie: $(grep -m1 '^ROUTEID=' "$RUNDIR/out.$port")"); fi
  reqs="$(wrk -t1 -c8 -d10s "${cookie[@]}" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')"
  wait "$pid"
  ir="$(awk '/^(summary|totals):/ {print $2; exit}' "$RUNDIR/cg.$port")"
  echo "$name: $reqs requests, $ir instructions in all, $((ir / reqs)) per request"
}
count "plain (balance + forward)" 8181
count "whole stack, route cookie sent" 8182 --sticky
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'); the start-up's instructions (under 1M) are included"
