#!/usr/bin/env bash
# Uploads to a member that takes nothing, through builds of the `tower-balancer` binary:
# CONNS (default 5) h2c connections each open 16 streaming `POST`s of 10 MB to a member
# that accepts connections and never reads, send what the windows allow for 4 s and go;
# then the balancer's member connections still established, at 5, 35, 65 and 95 s.
# Why: hyper's member connection task waits on the member's socket alone, so an upload to a
# hung member held its connection, and a descriptor, until the member came back or died,
# client or no client; `balancer.send_timeout` (default 60 s) now closes it.
# Usage: scripts/deaf-member.sh BINARY...  Needs python3 with the `h2` package
# (`pip install h2`). Bounded: clients stop after 4 s, each run after 95 s.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools python3:python3 ss:iproute2
python3 -c 'import h2' 2>/dev/null || { echo "needs python3's h2: pip install h2" >&2; exit 2; }
cat >"$RUNDIR/deaf.py" <<'PY'
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 19221)); s.listen(1024); s.settimeout(0.5)
held = []; end = time.time() + 600
while time.time() < end:
    try: held.append(s.accept()[0])
    except socket.timeout: pass
PY
cat >"$RUNDIR/upload.py" <<'PY'
import socket, time, h2.connection, h2.config
s = socket.create_connection(("127.0.0.1", 18300)); s.settimeout(0.05)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection(); s.sendall(c.data_to_send())
ids = []
for _ in range(16):
    sid = c.get_next_available_stream_id(); ids.append(sid)
    c.send_headers(sid, [(":method", "POST"), (":path", "/up"), (":scheme", "http"),
                         (":authority", "lb.test"), ("content-length", str(10 << 20))])
s.sendall(c.data_to_send())
end = time.time() + 4; chunk = b"x" * 16384
while time.time() < end:
    try:
        d = s.recv(65536)
        if not d: break
        c.receive_data(d)
    except socket.timeout: pass
    for sid in ids:
        try:
            w = min(c.local_flow_control_window(sid), c.max_outbound_frame_size)
            if w > 0: c.send_data(sid, chunk[:w])
        except Exception: pass
    s.sendall(c.data_to_send())
s.close()
PY
python3 "$RUNDIR/deaf.py" &
echo $! >"$RUNDIR/member.pid"
printf '[server]\nlisten = "127.0.0.1:18300"\nserver_name = "lb.test"\n\n[balancer]\nname = "b"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:19221"\nroute = "node1"\n' >"$RUNDIR/lb.toml"
held() { ss -Htn state established '( dport = :19221 )' | wc -l; }
for bin in "$@"; do
  "$bin" --config "$RUNDIR/lb.toml" 2>"$RUNDIR/lb.err" &
  pid=$!
  echo "$pid" >"$RUNDIR/lb.pid"
  sleep 1
  for _ in $(seq "${CONNS:-5}"); do timeout 10 python3 "$RUNDIR/upload.py" & done
  sleep 5
  line="$bin: member connections held at 5 s: $(held)"
  for t in 35 65 95; do sleep 30; line="$line, $t s: $(held)"; done
  echo "$line (clients gone at 4 s)"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
