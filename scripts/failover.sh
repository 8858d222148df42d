#!/usr/bin/env bash
# A member killed under full load, as the anchors' failover figure was taken: two nginx
# members, wrk -t1 -c64 for 8 s through each balancer, member 1 SIGKILLed (its master before
# its workers, so no worker is respawned) 3 s in and started again at 6 s. Balancers: nginx
# and HAProxy with the anchors' configs (HAProxy with redispatch and retry-on), and ours as
# operators run it: `is_cluster --config` on a file with defaults untouched but the recipe's
# 1 s health probe. Each balancer runs twice: round robin, and every request pinned to
# member 1 by a cookie (HAProxy's and ours; nginx has none). Prints requests, non-2xx
# answers, socket errors and the balancer's CPU time per request (user and sys) per run.
# Usage: scripts/failover.sh   (bounded: about two minutes after the build; stops everything)
#        OURS_BIN=path/to/is_cluster scripts/failover.sh   (another build of ours, e.g. an
#        older commit's, instead of building this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk haproxy:haproxy curl:curl
start_backends

nginx_lb_conf 1 "" "  server { listen 127.0.0.1:8082; $NGINX_PROXY }" >"$RUNDIR/lb-nginx.conf"
nginx -c "$RUNDIR/lb-nginx.conf" -p "$RUNDIR"
haproxy_lb_cfg 1 "  bind 127.0.0.1:8083" "inter 1s" >"$RUNDIR/lb-haproxy.cfg"
haproxy -D -f "$RUNDIR/lb-haproxy.cfg"

cat >"$RUNDIR/lb.toml" <<CONF
[server]
listen = "127.0.0.1:8091"
server_name = "lb.test"
[balancer]
name = "recipe"
$(members_toml)
[balancer.health]
uri = "/"
interval = "1s"
CONF
if [ -z "${OURS_BIN:-}" ]; then
  cargo build -q --release -p tower-balancer-examples --example is_cluster
  OURS_BIN=./target/release/examples/is_cluster
fi
"$OURS_BIN" --config "$RUNDIR/lb.toml" >"$RUNDIR/ours.out" 2>&1 &
echo $! >"$RUNDIR/ours.pid"
wait_ready http://127.0.0.1:8091/

# ours: the route cookie the balancer sets on an answer from node1
OURS_COOKIE=""
for _ in $(seq 1 20); do
  hdrs="$(curl -s -D - -o /dev/null http://127.0.0.1:8091/)"
  if grep -qi '^x-node: node1' <<<"$hdrs"; then
    OURS_COOKIE="$(grep -m1 -i '^set-cookie: ROUTEID=' <<<"$hdrs" | sed 's/^[^:]*: //; s/;.*//' | tr -d '\r')"
    break
  fi
done
[ -n "$OURS_COOKIE" ] || { echo "no route cookie from ours" >&2; exit 1; }

kill_member1() { # the master first, so it cannot respawn a worker, then its workers
  local master workers
  master="$(cat "$RUNDIR/backend1.pid")"
  workers="$(pgrep -P "$master" || true)"
  kill -9 "$master"
  [ -n "$workers" ] && kill -9 $workers
  rm -f "$RUNDIR/backend1.pid"
}
run() { # name pid-file url [cookie] -> "name requests non-2xx socket-errors user-µs sys-µs"
  local name="$1" pidfile="$2" out u1 s1 u2 s2
  shift 2
  wait_ready "$1"
  wrk -t1 -c64 -d2s "$1" >/dev/null # warm the pools
  ( sleep 3; kill_member1; sleep 3; nginx -c "$RUNDIR/backend1.conf" -p "$RUNDIR" ) &
  local killer=$!
  read -r u1 s1 < <(cpu_ticks "$(cat "$pidfile")")
  if [ -n "${2:-}" ]; then
    out="$(wrk -t1 -c64 -d8s -H "Cookie: $2" "$1")"
  else
    out="$(wrk -t1 -c64 -d8s "$1")"
  fi
  read -r u2 s2 < <(cpu_ticks "$(cat "$pidfile")")
  wait "$killer"
  sleep 3 # the member passes its probes again before the next run
  local reqs non2xx sock
  reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
  sock="$(awk '/Socket errors/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$out")"
  echo "$name requests ${reqs} non-2xx ${non2xx:-0} socket-errors ${sock:-0} CPU µs/request $(awk \
    -v u=$((u2 - u1)) -v s=$((s2 - s1)) -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "user %.1f sys %.1f", u * 1e6 / hz / n, s * 1e6 / hz / n }')"
}
run nginx "$RUNDIR/lbnginx.pid" http://127.0.0.1:8082/
run haproxy "$RUNDIR/haproxy.pid" http://127.0.0.1:8083/
run ours "$RUNDIR/ours.pid" http://127.0.0.1:8091/
run haproxy-pinned "$RUNDIR/haproxy.pid" http://127.0.0.1:8083/ ROUTEID=node1
run ours-pinned "$RUNDIR/ours.pid" http://127.0.0.1:8091/ "$OURS_COOKIE"
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')"
