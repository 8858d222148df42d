#!/usr/bin/env bash
# Per-client rate limit under wrk (issue N): the `tower-balancer` binary from a file with
# [server.per_client] rate and burst, behind a trusted proxy (127.0.0.1, so the client is
# the X-Forwarded-For address), in front of the two nginx members of scripts/backends.sh.
# wrk floods as client 203.0.113.1 on 32 connections for DURATION seconds while curl asks
# as 203.0.113.2 every 100 ms. Passes when the flood got burst + rate x seconds answers
# 200 within 5%, every other flood answer was 429, and the other client got 200 every time.
# Usage: scripts/per-client-wrk.sh [path to the binary]   (RATE, BURST, DURATION to change
# the load; bounded: DURATION + a few seconds; stops everything it started)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${RATE:-200}"
BURST="${BURST:-50}"
DURATION="${DURATION:-10}"
BIN="${1:-}"
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk curl:curl
if [ -z "$BIN" ]; then
  cargo build -q -p tower-balancer-bin
  BIN=./target/debug/tower-balancer
fi
start_backends
cat >"$RUNDIR/lb.toml" <<CONF
[server]
listen = "127.0.0.1:8097"
server_name = "lb.test"

[server.per_client]
rate = $RATE
burst = $BURST

[balancer]
name = "b"
trusted_proxies = ["127.0.0.1"]

$(members_toml)

[manager]
listen = "127.0.0.1:9097"
CONF
"$BIN" --check "$RUNDIR/lb.toml" >/dev/null
"$BIN" --config "$RUNDIR/lb.toml" >"$RUNDIR/lb.log" 2>&1 &
echo $! >"$RUNDIR/lb.pid"
wait_ready http://127.0.0.1:8097/ -H 'X-Forwarded-For: 198.51.100.9'

polite() {
  local ok=0 other=0 code
  for _ in $(seq $((DURATION * 10))); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Forwarded-For: 203.0.113.2' http://127.0.0.1:8097/)"
    if [ "$code" = 200 ]; then ok=$((ok + 1)); else other=$((other + 1)); fi
    sleep 0.1
  done
  echo "$ok $other"
}
polite >"$RUNDIR/polite.out" &
POLITE=$!
wrk -t1 -c32 -d"${DURATION}s" --latency -H 'X-Forwarded-For: 203.0.113.1' http://127.0.0.1:8097/ >"$RUNDIR/wrk.out"
wait "$POLITE"
cat "$RUNDIR/wrk.out"

read -r total seconds < <(awk '/requests in/ { gsub(/s,/, "", $4); print $1, $4 }' "$RUNDIR/wrk.out")
refused="$(awk '/Non-2xx or 3xx responses/ { print $5 }' "$RUNDIR/wrk.out")"
refused="${refused:-0}"
passed=$((total - refused))
read -r polite_ok polite_other <"$RUNDIR/polite.out"
# every refusal the flood saw was a 429 the balancer counted (lb_client_limited_total)
limited="$(curl -s http://127.0.0.1:9097/metrics | awk '/^lb_client_limited_total\{limit="rate"\}/ { print $2 }')"
awk -v passed="$passed" -v total="$total" -v s="$seconds" -v rate="$RATE" -v burst="$BURST" \
  -v ok="$polite_ok" -v other="$polite_other" -v limited="${limited:-0}" 'BEGIN {
  expected = burst + rate * s
  dev = (passed - expected) / expected
  printf "flood: %d requests, %d passed in %.2f s (expected %.0f: burst %d + %d/s), %+.2f%%\n", total, passed, s, expected, burst, rate, 100 * dev
  printf "other client: %d of %d answered 200\n", ok, ok + other
  printf "refused: %d by wrk, lb_client_limited_total{limit=\"rate\"} %d\n", total - passed, limited
  if (dev > 0.05 || dev < -0.05) { print "FAIL: the flood passed outside 5% of its rate"; exit 1 }
  if (other != 0) { print "FAIL: the other client was refused"; exit 1 }
  if (total - passed <= 0) { print "FAIL: the flood was never refused"; exit 1 }
  # the balancer may have refused up to one request a connection that wrk did not wait for
  if (limited < total - passed || limited > total - passed + 32) { print "FAIL: refusals other than counted 429s"; exit 1 }
}'
