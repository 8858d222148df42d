#!/usr/bin/env bash
# A member that sends a second answer 5 ms after a 204 (a member bug, as a body on a HEAD
# answer is) and a client that checks each answer is its own while another client sets the
# member off 20 times: how many of 3,000 answers went to the wrong request, through the
# binary at BIN (default target/release/tower-balancer) or any proxy on 127.0.0.1:18080.
# Usage: scripts/stray/run.sh [BIN]. Bounded: everything stops within 60 s.
set -euo pipefail
cd "$(dirname "$0")"
BIN=${1:-../../target/release/tower-balancer}
conf=$(mktemp)
printf '[server]\nlisten = "127.0.0.1:18080"\nserver_name = "lb.test"\n\n[balancer]\nname = "t"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:18101"\nroute = "node1"\n' >"$conf"
timeout 60 python3 member.py & member=$!
timeout 60 "$BIN" --config "$conf" --workers 1 >/dev/null 2>&1 & lb=$!
trap 'kill $member $lb 2>/dev/null || true; rm -f "$conf"' EXIT
for _ in $(seq 1 50); do curl -sf -o /dev/null http://127.0.0.1:18080/ready && break; sleep 0.1; done
timeout 50 python3 client.py
