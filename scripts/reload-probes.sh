#!/usr/bin/env bash
# Do health probes still take a failing member out while reloads come faster than their
# interval? Two members (python, one of whose /health starts failing 3 s in), the binary
# with probes every 1 s and its defaults otherwise, `wrk -t1 -c64 -d9s`, a SIGHUP every
# 0.8 s meanwhile; prints the requests the failing member took 5 to 9 s after its health
# began failing, and its down lines. Before the probes' streaks lived with the member, each
# reload started them over and the member kept its traffic.
# Usage: scripts/reload-probes.sh [BINARY]   (default: the dist build; bounded: ~15 s)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools wrk:wrk
BIN="${1:-}"
if [ -z "$BIN" ]; then
  cargo build -q --profile dist -p tower-balancer-bin
  BIN=./target/dist/tower-balancer
fi
cat >"$RUNDIR/member.py" <<'PY'
import asyncio, os, sys, time
port, flag = int(sys.argv[1]), sys.argv[2]
async def handle(r, w):
    try:
        while True:
            head = (await r.readuntil(b"\r\n\r\n")).decode("latin1")
            path = head.split(" ", 2)[1]
            print("%.3f %s" % (time.time(), path), flush=True)
            if path == "/health" and os.path.exists(flag):
                w.write(b"HTTP/1.1 503 No\r\nContent-Length: 2\r\n\r\nno")
            else:
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await w.drain()
    except Exception:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", port)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
for port in 9505 9506; do
  python3 "$RUNDIR/member.py" "$port" "$RUNDIR/fail.$port" >"$RUNDIR/m.$port.log" &
  echo $! >"$RUNDIR/m.$port.pid"
done
printf '[server]\nlisten = "127.0.0.1:8394"\nserver_name = "localhost"\n\n[balancer]\nname = "b"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:9505"\nroute = "a"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:9506"\nroute = "b"\n\n[balancer.health]\nuri = "/health"\ninterval = "1s"\n' >"$RUNDIR/lb.toml"
sleep 1
"$BIN" --config "$RUNDIR/lb.toml" --workers 1 >/dev/null 2>"$RUNDIR/lb.err" &
lb=$!
echo $lb >"$RUNDIR/lb.pid"
sleep 3
touch "$RUNDIR/fail.9506"
t0=$(date +%s.%N)
wrk -t1 -c64 -d9s -H 'Host: localhost' http://127.0.0.1:8394/ >"$RUNDIR/wrk.out" &
wrk_pid=$!
for _ in $(seq 1 10); do sleep 0.8; kill -HUP "$lb"; done
wait "$wrk_pid"
grep "requests in" "$RUNDIR/wrk.out"
took=$(awk -v from="$(echo "$t0 + 5" | bc)" '$1 > from && $2 != "/health"' "$RUNDIR/m.9506.log" | wc -l)
echo "the failing member took $took requests 5-9 s after its health began failing;" \
  "down lines: $(grep -c 'change=Down' "$RUNDIR/lb.err" || true)"
