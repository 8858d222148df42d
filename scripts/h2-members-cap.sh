#!/usr/bin/env bash
# HTTP/2 clients to HTTP/2 members under a low open-file limit, through builds of the
# `tower-balancer` binary: each run starts BINARY under `ulimit -n 256` (a connection cap of
# 96) in front of two nginx members speaking HTTP/2 over TLS (`listen ... ssl http2`, with
# nginx's default of 1,000 requests a connection, after which it sends GOAWAY and the
# balancer makes a new one), and sends 3,000 requests over ten h2c connections of 100
# streams (h2load). It prints the status codes h2load got, the balancer's 503s for want of a
# place (`lb_client_requests_refused_total{reason="capacity"}`), its descriptors in use at
# the end, and the member connections nginx accepted.
# Why: streams to an HTTP/2 member share its one connection, and need no descriptor of
# their own. Charged a place each when they arrived (before the pick), 2,617 of 3,000 got
# 503 with 25 descriptors in use (hostile round 13).
# Usage: scripts/h2-members-cap.sh BINARY...  (RUNS=3 a binary by default; WORKERS=1).
# Bounded: each run is 3,000 requests under a 60 s timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx h2load:nghttp2-client curl:curl openssl:openssl
# a CA and the members' certificate for 127.0.0.1, which the balancer trusts by the CA
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=h2-members-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign \
  -keyout "$RUNDIR/ca.key" -out "$RUNDIR/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
  -keyout "$RUNDIR/member.key" -out "$RUNDIR/member.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$RUNDIR/ext"
openssl x509 -req -in "$RUNDIR/member.csr" -CA "$RUNDIR/ca.pem" -CAkey "$RUNDIR/ca.key" \
  -CAcreateserial -days 2 -extfile "$RUNDIR/ext" -out "$RUNDIR/member.pem" 2>/dev/null
cat >"$RUNDIR/members.conf" <<CONF
worker_processes 1;
pid $RUNDIR/members.pid;
error_log $RUNDIR/members.err;
events { worker_connections 4096; }
http {
  log_format conns '\$connection';
  access_log $RUNDIR/members.log conns;
  server {
    listen 127.0.0.1:9863 ssl http2; listen 127.0.0.1:9864 ssl http2;
    ssl_certificate $RUNDIR/member.pem; ssl_certificate_key $RUNDIR/member.key;
    location / { return 200 "ok\\n"; }
  }
}
CONF
nginx -c "$RUNDIR/members.conf" -p "$RUNDIR"
cat >"$RUNDIR/lb.toml" <<TOML
[server]
listen = "127.0.0.1:18510"
server_name = "localhost"

[balancer]
name = "h2"
trust_roots = ["$RUNDIR/ca.pem"]

[[balancer.member]]
url = "https://127.0.0.1:9863"
route = "node1"

[[balancer.member]]
url = "https://127.0.0.1:9864"
route = "node2"

[balancer.health]
interval = "1s"

[manager]
listen = "127.0.0.1:18511"
TOML
for bin in "$@"; do
  for run in $(seq 1 "${RUNS:-3}"); do
    : >"$RUNDIR/members.log"
    (ulimit -S -H -n 256 && exec "$bin" --config "$RUNDIR/lb.toml" --workers "${WORKERS:-1}") >"$RUNDIR/lb.log" 2>&1 &
    echo $! >"$RUNDIR/lb.pid"
    wait_ready http://127.0.0.1:18510/ || { cat "$RUNDIR/lb.log" >&2; exit 1; }
    codes=$(timeout 60 h2load -c10 -m100 -n3000 http://127.0.0.1:18510/ 2>&1 | grep -E '^status codes' | sed 's/status codes: //')
    pid=$(cat "$RUNDIR/lb.pid")
    fds=$(ls "/proc/$pid/fd" | wc -l)
    refused=$(curl -s -m 5 http://127.0.0.1:18511/metrics | awk '/^lb_client_requests_refused_total\{reason="capacity"\}/ {print $2}')
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    conns=$(sort -u "$RUNDIR/members.log" | wc -l)
    echo "$bin run $run: $codes; capacity 503s ${refused:-?}; descriptors in use at the end $fds; member connections $conns"
  done
done
