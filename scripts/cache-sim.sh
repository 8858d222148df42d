#!/usr/bin/env bash
# Where a proxied request's user time goes beyond instructions: callgrind's cache simulator
# (32 KiB 8-way L1 caches, as this machine's) on the `tower-balancer` binary (dist build, a
# TOML file with its defaults, one worker) and on the hyper floor (benches' hyper_floor,
# perf build), each under `h2load --h1 -c8` for 1,000 and then 5,000 requests; the
# difference over the 4,000 requests between is per request, start-up and connection set-up
# left out. Prints instructions, data reads and writes, L1 instruction misses, L1 data read
# and write misses a request, and the same for memcpy alone (moves of requests, responses
# and futures between layers).
# Usage: scripts/cache-sim.sh   (bounded: about a minute after the builds; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light valgrind:valgrind h2load:nghttp2-client curl:curl
cargo build -q --profile dist -p tower-balancer-bin
cargo build -q --profile perf -p benches --bin hyper_floor
start_backends
binary_toml 8281 >"$RUNDIR/plain.toml"
run() { # name port n command...
  local name=$1 port=$2 n=$3
  shift 3
  timeout -s KILL 120 valgrind --tool=callgrind --cache-sim=yes \
    --callgrind-out-file="$RUNDIR/cs.$name.$n" "$@" >/dev/null 2>&1 &
  echo $! >"$RUNDIR/cs.pid"
  wait_ready "http://127.0.0.1:$port/"
  h2load --h1 -n "$n" -c 8 "http://127.0.0.1:$port/" | grep -q "succeeded, 0 failed" ||
    { echo "$name: requests failed" >&2; exit 1; }
  kill -TERM "$(cat "$RUNDIR/cs.pid")"
  wait "$(cat "$RUNDIR/cs.pid")" || true
}
for n in 1000 5000; do
  run binary 8281 "$n" ./target/dist/tower-balancer --config "$RUNDIR/plain.toml" --workers 1
  run floor 8280 "$n" ./target/perf/hyper_floor --listen 127.0.0.1:8280 \
    --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 110
done
totals() { grep -E '^(summary|totals):' "$1" | head -1 | cut -d' ' -f2-7; }
memcpy() {
  callgrind_annotate --threshold=100 --show-percs=no "$1" 2>/dev/null |
    awk '/__memcpy_avx_unaligned_erms/ { gsub(/,/, ""); for (i = 1; i <= 6; i++) if ($i == ".") $i = 0; print $1, $2, $3, $4, $5, $6; exit }'
}
per_request() { # label a-numbers b-numbers
  local label=$1
  read -r -a a <<<"$2"
  read -r -a b <<<"$3"
  printf '%-22s' "$label"
  for i in 0 1 2 3 4 5; do printf ' %8d' $(((${b[$i]:-0} - ${a[$i]:-0}) / 4000)); done
  echo
}
printf '%-22s %8s %8s %8s %8s %8s %8s\n' "per request" Ir Dr Dw I1mr D1mr D1mw
for name in binary floor; do
  per_request "$name" "$(totals "$RUNDIR/cs.$name.1000")" "$(totals "$RUNDIR/cs.$name.5000")"
  per_request "$name, memcpy" "$(memcpy "$RUNDIR/cs.$name.1000")" "$(memcpy "$RUNDIR/cs.$name.5000")"
done
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')"
