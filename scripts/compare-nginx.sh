#!/usr/bin/env bash
# Loopback throughput of tower-balancer (examples/lb_bench: balance + forward, round robin,
# pooled keep-alive to members) against nginx with the equivalent upstream config, on the
# same two nginx backends, with the same load: wrk -t1 -c64 -d8s, targets in turn A B A B.
# The configs are the anchors' (../shared/anchors): one nginx worker, upstream keepalive 64.
# Usage: scripts/compare-nginx.sh [threads]   (bounded: about a minute; stops everything it started)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-1}"
need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  apt-get update -qq && apt-get install -y -qq nginx-light wrk >/dev/null
fi
RUNDIR="$(mktemp -d)"
cleanup() {
  for pid in "$RUNDIR"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  [ -n "${LB_PID:-}" ] && kill "$LB_PID" 2>/dev/null || true
  rm -rf "$RUNDIR"
}
trap cleanup EXIT

for n in 1 2; do
  port=$((9762 + n))
  cat >"$RUNDIR/backend$n.conf" <<CONF
worker_processes 1;
pid $RUNDIR/backend$n.pid;
error_log $RUNDIR/backend$n.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; location / { add_header X-Node node$n; return 200 "node$n\n"; } } }
CONF
  nginx -c "$RUNDIR/backend$n.conf" -p "$RUNDIR"
done
cat >"$RUNDIR/lb-nginx.conf" <<CONF
worker_processes $THREADS;
pid $RUNDIR/lbnginx.pid;
error_log $RUNDIR/lbnginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream cluster { server 127.0.0.1:9763; server 127.0.0.1:9764; keepalive 64; }
  server { listen 127.0.0.1:8082;
    location / { proxy_pass http://cluster; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c "$RUNDIR/lb-nginx.conf" -p "$RUNDIR"

cargo build -q --release -p tower-balancer-proxy --example lb_bench
./target/release/examples/lb_bench --listen 127.0.0.1:8090 --member 127.0.0.1:9763 --member 127.0.0.1:9764 \
  --threads "$THREADS" --seconds 120 >/dev/null &
LB_PID=$!
sleep 1
for url in http://127.0.0.1:8082/ http://127.0.0.1:8090/; do
  curl -sf "$url" >/dev/null || { echo "no answer from $url" >&2; exit 1; }
  wrk -t1 -c64 -d2s "$url" >/dev/null # warm up pools
done

run() { # name url -> "req/s p50 p99"
  local out
  out="$(wrk -t1 -c64 -d8s --latency "$2")"
  local rps p50 p99
  rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  echo "$1 $rps $p50 $p99"
}
{
  for round in 1 2; do
    run nginx http://127.0.0.1:8082/
    run tower-balancer http://127.0.0.1:8090/
  done
} | tee "$RUNDIR/results"
echo
cargo build -q --release -p tower-balancer-proxy --example pool_memory
./target/release/examples/pool_memory --member 127.0.0.1:9763 --connections 500
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'); worker threads: $THREADS"
awk '{ rps[$1] = rps[$1] " " $2 } END {
  for (t in rps) { n = split(rps[t], v, " "); if (v[1] > v[2]) { hi = v[1]; lo = v[2] } else { hi = v[2]; lo = v[1] }
    med[t] = (hi + lo) / 2; printf "%-15s req/s runs:%s  mean of runs: %.0f\n", t, rps[t], med[t] }
  printf "ratio tower-balancer / nginx: %.2f\n", med["tower-balancer"] / med["nginx"] }' "$RUNDIR/results"
