#!/usr/bin/env bash
# What a proxied request costs the scheduler, for the `tower-balancer` binary (`--profile
# dist`, a TOML file with its defaults, one worker) and the hyper floor
# (benches/src/bin/hyper_floor.rs): the wakeups of other processes it makes, the
# inter-processor interrupts they send, and its own context switches, each a request, counted
# by `perf stat` tracepoints on the balancer's process over 5 s of `wrk -t1 -c64` (as
# scripts/compare.sh loads it), the two in turn, `ROUNDS` times (default 2).
# Why: the binary makes the same system calls a request as the floor (scripts/syscalls.sh)
# but spends more kernel time on them in scripts/compare.sh. A write to a socket whose
# reader sleeps wakes that reader, and on a virtual machine the interrupt sent to wake it on
# another core is dear: this shows how often that happens.
# Needs perf with tracepoints (Debian's linux-perf; run as root).
# Usage: scripts/wakeups.sh   (bounded: about 20 s a round after the build; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk perf:linux-perf curl:curl
start_backends
cargo build -q --profile dist -p tower-balancer-bin
cargo build -q --profile perf -p benches --bin hyper_floor
binary_toml 8293 >"$RUNDIR/wk.toml"
EVENTS=sched:sched_waking,sched:sched_wakeup,ipi:ipi_send_cpu,context-switches

count() { # name port command... ; the command is stopped with SIGTERM after the count
  local name=$1 port=$2 pid rps
  shift 2
  "$@" >/dev/null 2>&1 &
  pid=$!
  wait_ready "http://127.0.0.1:$port/"
  timeout 30 wrk -t1 -c64 -d7s "http://127.0.0.1:$port/" >"$RUNDIR/$name.wrk" &
  sleep 1
  timeout 20 perf stat -x, -e "$EVENTS" -p "$pid" -- sleep 5 2>"$RUNDIR/$name.stat"
  wait %2 || true
  kill -TERM "$pid" 2>/dev/null || true
  timeout 20 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rps="$(awk '/Requests\/sec/ {print $2}' "$RUNDIR/$name.wrk")"
  echo "$name: $rps req/s; a request: $(awk -F, -v r="$rps" \
    '$3 != "" {printf "%s %.2f  ", $3, $1 / (r * 5)}' "$RUNDIR/$name.stat")"
}
for _ in $(seq 1 "${ROUNDS:-2}"); do
  count floor 8294 ./target/perf/hyper_floor --listen 127.0.0.1:8294 \
    --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 14
  count binary 8293 ./target/dist/tower-balancer --config "$RUNDIR/wk.toml" --workers 1
done
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')"
