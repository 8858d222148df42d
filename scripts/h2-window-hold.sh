#!/usr/bin/env bash
# HTTP/2 clients that grant no flow-control window, through builds of the `tower-balancer`
# binary under a low open-file limit: CONNS (default 2) h2c connections each announce
# INITIAL_WINDOW_SIZE 0 and open as many GETs of a 1 MiB answer as the balancer announces
# streams; at 5 s, the streams each opened, the member connections held, and whether a new
# client is answered within 3 s. The balancer runs under `ulimit -n NOFILE` (default 256:
# a connection cap of 96, 192 places) with a file of defaults.
# Why: each such stream holds a member connection until `send_timeout`; at 100 streams a
# connection, two clients hold every place that limit leaves and every other client waits
# (round 9). It measures what a stream limit, or any other answer to that, changes.
# Usage: scripts/h2-window-hold.sh BINARY...  (e.g. copies of target/release/tower-balancer
# before and after a change). Needs python3 with the `h2` package (`pip install h2`).
# Bounded: every client stops after 9 s, every balancer after its run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools python3:python3 curl:curl ss:iproute2
python3 -c 'import h2' 2>/dev/null || { echo "needs python3's h2: pip install h2" >&2; exit 2; }
# a member answering every request with 1 MiB, a thread a connection
cat >"$RUNDIR/member.py" <<'PY'
import socket, threading
BODY = b'x' * (1 << 20)
def serve(c):
    try:
        while c.recv(65536):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
    except OSError:
        pass
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 19211)); s.listen(1024)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
# one h2c connection granting no window: opens as many streams as announced, holds 9 s
cat >"$RUNDIR/client.py" <<'PY'
import socket, time, h2.connection, h2.config, h2.settings
s = socket.create_connection(("127.0.0.1", 18290)); s.settimeout(0.05)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection(); c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
s.sendall(c.data_to_send())
def pump(t):
    end = time.time() + t
    while time.time() < end:
        try: d = s.recv(65536)
        except socket.timeout: continue
        if not d: return
        c.receive_data(d); s.sendall(c.data_to_send())
pump(0.5)
opened = 0
while c.open_outbound_streams < c.remote_settings.max_concurrent_streams and opened < 1000:
    c.send_headers(c.get_next_available_stream_id(), [(":method", "GET"), (":path", "/big"),
                   (":scheme", "http"), (":authority", "lb.test")], end_stream=True)
    opened += 1
s.sendall(c.data_to_send())
print(opened, flush=True)
pump(9)
PY
python3 "$RUNDIR/member.py" &
echo $! >"$RUNDIR/member.pid"
printf '[server]\nlisten = "127.0.0.1:18290"\nserver_name = "lb.test"\n\n[balancer]\nname = "b"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:19211"\nroute = "node1"\n' >"$RUNDIR/lb.toml"
for bin in "$@"; do
  (ulimit -n "${NOFILE:-256}"; exec "$bin" --config "$RUNDIR/lb.toml" --workers 1 2>"$RUNDIR/lb.err") &
  pid=$!
  echo "$pid" >"$RUNDIR/lb.pid"
  wait_ready http://127.0.0.1:18290/
  clients=()
  for n in $(seq "${CONNS:-2}"); do
    timeout 12 python3 "$RUNDIR/client.py" >"$RUNDIR/client$n.out" &
    clients+=($!)
  done
  sleep 5
  held=$(ss -Htn state established '( dport = :19211 )' | wc -l)
  new=$(curl -s -o /dev/null -w '%{http_code} in %{time_total} s' -m 3 http://127.0.0.1:18290/ || true)
  wait "${clients[@]}" || true
  echo "$bin, ulimit -n ${NOFILE:-256}, ${CONNS:-2} connections: streams opened $(cat "$RUNDIR"/client*.out | tr '\n' ' '); member connections held at 5 s: $held; a new client: $new"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
