#!/usr/bin/env bash
# Full load through the binary as operators run it (a file, its defaults) with a TLS front,
# health probes every second (the recipe's interval) and a [manager] for the metrics: wrk
# over TLS (HTTP/1.1) and h2load (TLS + HTTP/2), one worker, against the two nginx members
# of scripts/backends.sh. Then every limit-close and refusal counter, which must stay 0
# for well-behaved clients, member ejections, and the WARN/ERROR lines the balancer logged.
# Usage: scripts/full-load.sh [BINARY]   (default ./target/release/tower-balancer: build it
# with `cargo build --profile bench -p tower-balancer-bin`); bounded: about 20 s.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-./target/release/tower-balancer}"
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk h2load:nghttp2-client
start_backends
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wso2.com \
  -keyout "$RUNDIR/lb.key" -out "$RUNDIR/lb.crt" 2>/dev/null
{
  binary_toml 18443 "certificate = \"$RUNDIR/lb.crt\"
key = \"$RUNDIR/lb.key\""
  printf '\n[balancer.health]\ninterval = "1s"\n\n[manager]\nlisten = "127.0.0.1:19900"\n'
} >"$RUNDIR/lb.toml"
"$BIN" --check "$RUNDIR/lb.toml"
"$BIN" --config "$RUNDIR/lb.toml" --workers 1 2>"$RUNDIR/lb.err" &
echo $! >"$RUNDIR/lb.pid"
wait_ready https://127.0.0.1:18443/ -k
pid=$(cat "$RUNDIR/lb.pid")
t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
wrk -t1 -c64 -d8s https://127.0.0.1:18443/ | grep -E "Requests/sec|Non-2xx|Socket errors|requests in"
h2load -c64 -m10 -D8 https://127.0.0.1:18443/ 2>&1 | grep -E "^requests:|^status codes:"
t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
echo "the balancer's CPU over both: $((t1 - t0)) clock ticks"
curl -s http://127.0.0.1:19900/metrics |
  grep -E "^lb_client_(connections_closed|requests_refused)_total|^lb_member_ejections_total" || true
echo "WARN or ERROR lines logged: $(grep -c -E " (WARN|ERROR) " "$RUNDIR/lb.err" || true)"
grep -E " (WARN|ERROR) " "$RUNDIR/lb.err" | head -5 || true
