#!/usr/bin/env bash
# Slow readers and big answers through builds of the `tower-balancer` binary: whether a
# client reading a 32 MiB answer steadily at each of RATES bytes/s (default 50000 500000)
# for READ_FOR seconds (default 15) is cut by a SEND_TIMEOUT send timeout (default 3s; the
# balancer's INFO line for that cut, and when it came), and the CPU ten 32 MiB downloads at
# full speed cost (clock ticks of the balancer from /proc), the builds in turn, ROUNDS
# times (default 3).
# Why: a client socket's unsent bytes are capped (TCP_NOTSENT_LOWAT, serve/server.rs) so
# that steady slow readers see writes progress; the cap must not cost bulk downloads.
# Usage: scripts/slow-readers.sh BINARY...  (e.g. copies of target/release/tower-balancer
# built with `cargo build --profile bench -p tower-balancer-bin` before and after a change);
# bounded: every client stops after READ_FOR s, every balancer is stopped after its round.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools python3:python3 curl:curl
# a member answering every request with 32 MiB
cat >"$RUNDIR/member.py" <<'PY'
import socket, threading
BODY = b'x' * (32 << 20)
def serve(c):
    try:
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
    except OSError:
        pass
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 19201)); s.listen(64)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
# a client reading RATE bytes/s for 15 s; prints how it ended
cat >"$RUNDIR/client.py" <<'PY'
import socket, sys, time
rate = int(sys.argv[1]); limit = float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", 18280))
s.sendall(b"GET /big HTTP/1.1\r\nHost: lb.test\r\n\r\n")
t0 = time.time(); got = 0
while time.time() - t0 < limit:
    d = s.recv(int(rate * 0.05))
    if not d:
        print("closed after %.1f s, %d bytes" % (time.time() - t0, got)); sys.exit()
    got += len(d); time.sleep(0.05)
print("read for %d s, %d bytes" % (limit, got))
PY
python3 "$RUNDIR/member.py" &
echo $! >"$RUNDIR/member.pid"
printf '[server]\nlisten = "127.0.0.1:18280"\nserver_name = "lb.test"\nsend_timeout = "%s"\n\n[balancer]\nname = "b"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:19201"\nroute = "node1"\n' "${SEND_TIMEOUT:-3s}" >"$RUNDIR/lb.toml"

for round in $(seq 1 "${ROUNDS:-3}"); do
  for bin in "$@"; do
    "$bin" --config "$RUNDIR/lb.toml" --workers 1 2>"$RUNDIR/lb.err" &
    pid=$!
    echo "$pid" >"$RUNDIR/lb.pid"
    wait_ready http://127.0.0.1:18280/big
    for rate in ${RATES:-50000 500000}; do
      began=$(date +%s.%N)
      ended="$(python3 "$RUNDIR/client.py" "$rate" "${READ_FOR:-15}")"
      cut="$(awk -v b="$began" '/send timeout/ { t = $1; sub(/.*T/, "", t); sub(/Z$/, "", t); split(t, x, ":"); s = x[1] * 3600 + x[2] * 60 + x[3]; split(b, y, "."); d = s - (y[1] % 86400) - ("0." y[2]); printf "cut %.1f s after the request", d; exit }' "$RUNDIR/lb.err")"
      : >"$RUNDIR/lb.err"
      echo "round $round $bin, reading $rate B/s: client $ended; balancer: ${cut:-no cut}"
    done
    a=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    for _ in $(seq 10); do curl -s -o /dev/null http://127.0.0.1:18280/big; done
    b=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "round $round $bin, 10 downloads of 32 MiB: $((b - a)) CPU ticks"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done
