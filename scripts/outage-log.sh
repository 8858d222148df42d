#!/usr/bin/env bash
# How much the binary logs while its whole cluster is down at full load: both members'
# ports closed, `wrk -t1 -c64 -d8s` against one worker, then the bytes and lines it wrote to
# stderr (its default level: warnings and errors) and its count lines. Before the log
# budget it wrote a line per failed request (45 MB in these 8 s); now ten a second and a
# count of the rest. Then the same for a client flooding HTTP/2 resets over h2c for 10 s
# (scripts/h2c-reset-flood.py), which wrote two lines a connection before.
# Usage: scripts/outage-log.sh [BINARY]   (default: builds and runs the dist build; bounded:
# about 25 seconds after the build; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools wrk:wrk curl:curl nginx:nginx-light
BIN="${1:-}"
if [ -z "$BIN" ]; then
  cargo build -q --profile dist -p tower-balancer-bin
  BIN=./target/dist/tower-balancer
fi
closed_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
printf '[server]\nlisten = "127.0.0.1:8391"\nserver_name = "lb.test"\n\n[balancer]\nname = "down"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:%s"\nroute = "n1"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:%s"\nroute = "n2"\n' \
  "$(closed_port)" "$(closed_port)" >"$RUNDIR/lb.toml"
env -u RUST_LOG "$BIN" --config "$RUNDIR/lb.toml" --workers 1 >/dev/null 2>"$RUNDIR/stderr" &
echo $! >"$RUNDIR/lb.pid"
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:8391/ && break; sleep 0.1; done
wrk -t1 -c64 -d8s http://127.0.0.1:8391/ | grep -E "requests in|Non-2xx"
kill -TERM "$(cat "$RUNDIR/lb.pid")"
sleep 1
echo "stderr: $(wc -c <"$RUNDIR/stderr") bytes, $(wc -l <"$RUNDIR/stderr") lines," \
  "of them $(grep -c 'request failed' "$RUNDIR/stderr" || true) 'request failed'"
grep "failed requests beyond" "$RUNDIR/stderr" | tail -2 || true
# and a client flooding HTTP/2 resets over h2c for 10 s against members that are up
start_backends
binary_toml 8393 >"$RUNDIR/flood.toml"
env -u RUST_LOG "$BIN" --config "$RUNDIR/flood.toml" --workers 1 >/dev/null 2>"$RUNDIR/flood.stderr" &
echo $! >"$RUNDIR/flood.pid"
wait_ready http://127.0.0.1:8393/
python3 scripts/h2c-reset-flood.py 127.0.0.1:8393 10 8
kill -TERM "$(cat "$RUNDIR/flood.pid")"
sleep 1
echo "reset flood: stderr $(wc -c <"$RUNDIR/flood.stderr") bytes, $(wc -l <"$RUNDIR/flood.stderr") lines"
