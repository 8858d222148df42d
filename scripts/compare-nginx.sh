#!/usr/bin/env bash
# Loopback throughput of tower-balancer (examples/lb_bench: balance + forward, round robin,
# pooled keep-alive to members) against nginx with the equivalent upstream config, on the
# same two nginx backends, with the same load: wrk -t1 -c64 -d8s, targets in turn, twice;
# plain and with TLS in front (RSA 2048, keep-alive, as the anchors' lb-nginx-tls.conf).
# The configs are the anchors' (../shared/anchors): one nginx worker, upstream keepalive 64.
# Usage: scripts/compare-nginx.sh [threads]   (bounded: about two minutes; stops everything it started)
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
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wso2.com \
  -keyout "$RUNDIR/lb.key" -out "$RUNDIR/lb.crt" 2>/dev/null
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
  server { listen 127.0.0.1:8442 ssl; ssl_certificate $RUNDIR/lb.crt; ssl_certificate_key $RUNDIR/lb.key;
    location / { proxy_pass http://cluster; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c "$RUNDIR/lb-nginx.conf" -p "$RUNDIR"

cargo build -q --release -p tower-balancer-proxy --example lb_bench
LB=./target/release/examples/lb_bench
MEMBERS=(--member 127.0.0.1:9763 --member 127.0.0.1:9764)
# one multi-threaded runtime; one single-threaded runtime per thread (SO_REUSEPORT, as nginx's
# workers); and the per-thread layout with TLS in front (the same RSA 2048 certificate as nginx)
$LB --listen 127.0.0.1:8090 "${MEMBERS[@]}" --threads "$THREADS" --seconds 300 >/dev/null &
echo $! >"$RUNDIR/lb1.pid"
$LB --listen 127.0.0.1:8091 "${MEMBERS[@]}" --threads "$THREADS" --per-core --seconds 300 >/dev/null &
echo $! >"$RUNDIR/lb2.pid"
$LB --listen 127.0.0.1:8443 "${MEMBERS[@]}" --threads "$THREADS" --per-core --seconds 300 \
  --cert "$RUNDIR/lb.crt" --key "$RUNDIR/lb.key" >/dev/null &
echo $! >"$RUNDIR/lb3.pid"
sleep 1
TARGETS=(
  "nginx http://127.0.0.1:8082/"
  "ours-multi http://127.0.0.1:8090/"
  "ours-per-thread http://127.0.0.1:8091/"
  "nginx-tls https://127.0.0.1:8442/"
  "ours-tls https://127.0.0.1:8443/"
)
for t in "${TARGETS[@]}"; do
  url="${t#* }"
  curl -skf "$url" >/dev/null || { echo "no answer from $url" >&2; exit 1; }
  wrk -t1 -c64 -d2s "$url" >/dev/null # warm up pools
done

run() { # name url -> "name req/s p50 p99"
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
    for t in "${TARGETS[@]}"; do run ${t}; done
  done
} | tee "$RUNDIR/results"
echo
cargo build -q --release -p tower-balancer-proxy --example pool_memory
./target/release/examples/pool_memory --member 127.0.0.1:9763 --connections 500
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'); worker threads: $THREADS"
awk '{ rps[$1] = rps[$1] " " $2; n[$1]++; sum[$1] += $2 } END {
  for (t in rps) { mean[t] = sum[t] / n[t]; printf "%-16s req/s runs:%s  mean: %.0f\n", t, rps[t], mean[t] }
  printf "ratio ours (one multi-threaded runtime) / nginx:  %.2f\n", mean["ours-multi"] / mean["nginx"]
  printf "ratio ours (a runtime per thread) / nginx:       %.2f\n", mean["ours-per-thread"] / mean["nginx"]
  printf "ratio ours TLS front / nginx TLS front:          %.2f\n", mean["ours-tls"] / mean["nginx-tls"] }' "$RUNDIR/results"
