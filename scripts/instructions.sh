#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: unlike req/s on a shared
# machine, the count repeats run after run, so a change to the forwarding path can be judged
# by it. Two nginx backends on loopback; under `valgrind --tool=callgrind`, in turn:
# examples/lb_bench (built with `--profile perf`, as scripts/compare.sh builds it) plain and
# with the whole sticky stack and its route cookie sent; benches/src/bin/hyper_floor.rs (hyper's server
# and hyper-util's pooled client with nothing else: the floor under any hyper-based
# balancer); the `tower-balancer` binary as operators run it (`--profile dist`, a TOML file
# with its defaults, one worker), plain and with its route cookie sent; and nginx with
# compare.sh's upstream config. wrk -t1 -c8 for 10 s each.
# Usage: scripts/instructions.sh   (bounded: about two minutes after the build; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk valgrind:valgrind
start_backends
cargo build -q --profile perf -p tower-balancer-proxy --example lb_bench
cargo build -q --profile perf -p benches --bin hyper_floor
cargo build -q --profile dist -p tower-balancer-bin
MEMBERS=(--member 127.0.0.1:9763 --member 127.0.0.1:9764)

count() { # name port cookie(yes|no) command... (the command stops by itself after 16 s)
  local name=$1 port=$2 sticky=$3
  shift 3
  timeout -s QUIT 30 valgrind --tool=callgrind --callgrind-out-file="$RUNDIR/cg.$port" \
    "$@" >"$RUNDIR/out.$port" 2>/dev/null &
  local pid=$!
  sleep 4
  local cookie=() reqs ir
  if [ "$sticky" = yes ]; then cookie=(-H "Cookie: $(grep -m1 '^ROUTEID=' "$RUNDIR/out.$port")"); fi
  if [ "$sticky" = fetch ]; then # the cookie the balancer sets on its first answer
    cookie=(-H "Cookie: $(curl -si "http://127.0.0.1:$port/" | awk '!found && tolower($1) == "set-cookie:" && $2 ~ /^ROUTEID=/ { sub(/;.*/, "", $2); print $2; found = 1 }')")
  fi
  reqs="$(wrk -t1 -c8 -d10s "${cookie[@]}" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')"
  wait "$pid" || true
  ir="$(awk '/^(summary|totals):/ {print $2; exit}' "$RUNDIR/cg.$port")"
  echo "$name: $reqs requests, $ir instructions in all, $((ir / reqs)) per request"
}
count "ours, plain (balance + forward)" 8181 no \
  ./target/perf/examples/lb_bench --listen 127.0.0.1:8181 "${MEMBERS[@]}" --threads 1 --per-core --seconds 16
count "ours, whole stack, route cookie sent" 8182 yes \
  ./target/perf/examples/lb_bench --listen 127.0.0.1:8182 "${MEMBERS[@]}" --threads 1 --per-core --sticky --seconds 16
count "hyper floor (hyper server + hyper-util client, nothing else)" 8183 no \
  ./target/perf/hyper_floor --listen 127.0.0.1:8183 "${MEMBERS[@]}" --seconds 16
for port in 8185 8186; do
  binary_toml "$port" >"$RUNDIR/bin-$port.toml"
  # it serves until SIGTERM: sent after 16 s, as the others stop by themselves
  (sleep 16 && pkill -TERM -f "tower-balancer --config $RUNDIR/bin-$port.toml" || true) &
  if [ "$port" = 8185 ]; then sticky=no name="the binary, plain"; else sticky=fetch name="the binary, route cookie sent"; fi
  count "$name" "$port" "$sticky" ./target/dist/tower-balancer --config "$RUNDIR/bin-$port.toml" --workers 1
done
nginx_lb_conf 1 "daemon off; master_process off;" \
  "  server { listen 127.0.0.1:8184; $NGINX_PROXY }" >"$RUNDIR/lb-nginx.conf"
# nginx does not stop by itself: SIGQUIT (a graceful stop) after 16 s, as the others
(sleep 16 && pkill -QUIT -f "nginx -c $RUNDIR/lb-nginx.conf" || true) &
count "nginx (compare.sh's upstream config)" 8184 no nginx -c "$RUNDIR/lb-nginx.conf" -p "$RUNDIR"
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'); the start-up's instructions (under 1M) are included"
