#!/usr/bin/env bash
# Bursts under a low open-file limit with two workers, through builds of the `tower-balancer`
# binary: each run starts BINARY with `--workers 2` under `ulimit -n 256` in front of the two
# nginx members, and sends ten bursts of 1,000 requests over ten h2c connections of 100
# streams (h2load), while a plain client asks one `GET` at a time on a new connection (curl,
# 2 s timeout). It prints the bursts' 2xx (the rest are the connection cap's 503s, and 503s
# or 502s of member connects that found no descriptor), what the plain client got (its
# answers other than 200 and its slowest answer), then from the balancer's log: requests
# failed (the 502s and 503s of a member exchange; the cap's refusals are not among them), member connects that found no descriptor, the idle
# member connections closed for them, and failed accepts.
# Why: each worker keeps its own member connection pool, and descriptors are the process's.
# A burst through one worker left its idle connections holding descriptors, the other
# worker's connects failed with EMFILE (503) and its accepts too, and its own pool had
# nothing to close (a hostile tester's round 11). Now a connect that finds no descriptor
# closes an idle connection of any pool (one at a time: closing 32 cost warm connections,
# and the bursts' 2xx with them).
# Usage: scripts/two-workers-descriptors.sh BINARY...  (RUNS=5 a binary by default).
# Bounded: each burst is 1,000 requests under a 30 s timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx h2load:nghttp2-client curl:curl
start_backends
binary_toml 18410 >"$RUNDIR/lb.toml"
# a budget-limited WARN's count: the lines written and the ones it says it held back
logged() {
  local n
  n=$(grep -c "$2" "$1" || true)
  for held in $(grep "$3" "$1" | sed 's/.*not_logged=\([0-9]*\).*/\1/'); do n=$((n + held)); done
  echo "$n"
}
for bin in "$@"; do
  for run in $(seq 1 "${RUNS:-5}"); do
    log="$RUNDIR/lb.log"
    (ulimit -S -H -n 256 && exec "$bin" --config "$RUNDIR/lb.toml" --workers 2) >"$log" 2>&1 &
    echo $! >"$RUNDIR/lb.pid"
    wait_ready http://127.0.0.1:18410/
    (
      end=$((SECONDS + 60))
      while [ ! -f "$RUNDIR/done" ] && [ $SECONDS -lt $end ]; do
        curl -s -o /dev/null -m 2 -w '%{http_code} %{time_total}\n' http://127.0.0.1:18410/ || true
      done
    ) >"$RUNDIR/plain.txt" &
    ok=0
    for _ in $(seq 1 10); do
      n=$(timeout 30 h2load -c10 -m100 -n1000 http://127.0.0.1:18410/ 2>&1 | awk '/^status codes/ {print $3}')
      ok=$((ok + ${n:-0}))
    done
    touch "$RUNDIR/done"
    wait $!
    rm "$RUNDIR/done"
    plain=$(awk '{n++; if ($1 != "200") bad++; if ($2 > worst) worst = $2} END {printf "%d requests, %d not 200, slowest %.3f s", n, bad, worst}' "$RUNDIR/plain.txt")
    kill "$(cat "$RUNDIR/lb.pid")"
    wait "$(cat "$RUNDIR/lb.pid")" 2>/dev/null || true
    connects=$(logged "$log" "out of file descriptors for a member connection" "member connects out of descriptors beyond")
    accepts=$(logged "$log" "WARN accept failed" "failed accepts beyond")
    closed=$(grep -o 'closed=[0-9]*\|closed_idle_member_connections=[0-9]*' "$log" | sed 's/.*=//' | paste -sd, -)
    failed=$(logged "$log" "WARN request failed" "failed requests beyond")
    echo "$bin run $run: bursts 2xx $ok of 10000; plain client $plain; requests failed $failed; member connects out of descriptors $connects (idle closed: ${closed:-none}); failed accepts $accepts"
  done
done
