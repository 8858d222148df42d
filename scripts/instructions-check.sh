#!/usr/bin/env bash
# CI's guard on the cost of a request: instructions per proxied request of the
# `tower-balancer` binary (plain, route cookie sent, TLS front) and per pick, counted by
# valgrind's callgrind and held under the ceilings in scripts/instruction-ceilings.
#
# Why instructions and why two runs: req/s on a shared 2-core machine moves by tens of
# percent from run to run, an instruction count does not. Each path runs twice under
# callgrind, with 1,000 and 4,000 requests (h2load from Debian's nghttp2-client, HTTP/1.1,
# 8 connections: it sends exactly that many), and the figure is the difference divided by the
# difference in requests: start-up, TLS handshakes and connection set-up cancel out, so the
# figure is the same on a fast and a slow machine. The HTTP paths are also given as a ratio
# to hyper's own floor (benches/src/bin/hyper_floor.rs: hyper's server and hyper-util's pooled client
# and nothing else), measured the same way in the same run: a ratio holds across compilers
# and CPUs (httparse and memchr pick other code paths on other CPUs) where a raw count drifts.
#
# Built with `--profile bench` (release with line tables), which CI already builds for the
# benches, instead of the binary's fat-LTO `dist` profile (several minutes more on 2 cores);
# scripts/instructions.sh counts the dist binary.
#
# Usage: scripts/instructions-check.sh [--update]   (--update rewrites the ceilings file from
# this run's figures plus 5%). SAME_TASK=1 also counts benches/src/bin/same_task_floor.rs
# (hyper's own HTTP/1 client driven from the client connection's task: how far the floor
# could move with a member client of our own). Bounded: every process it starts stops within 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light h2load:nghttp2-client valgrind:valgrind openssl:openssl curl:curl
start_backends
cargo build -q --profile bench -p tower-balancer-bin -p benches --bin tower-balancer --bin pick_count --bin hyper_floor --bin same_task_floor
BIN=./target/release/tower-balancer
FLOOR=./target/release/hyper_floor
PICK=./target/release/pick_count
LOW=1000 HIGH=4000

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wso2.com \
  -keyout "$RUNDIR/lb.key" -out "$RUNDIR/lb.crt" 2>/dev/null
binary_toml 8281 >"$RUNDIR/plain.toml"
binary_toml 8282 "certificate = \"$RUNDIR/lb.crt\"
key = \"$RUNDIR/lb.key\"" >"$RUNDIR/tls.toml"

# total instructions of one callgrind run: run_once OUT REQUESTS URL COOKIE(yes|no) COMMAND...
run_once() {
  local out=$1 n=$2 url=$3 sticky=$4
  shift 4
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1 &
  local pid=$! i
  for i in $(seq 1 200); do # up to 20 s for valgrind to start it listening
    curl -ksf -o /dev/null "$url" && break
    sleep 0.1
  done
  local cookie=()
  if [ "$sticky" = yes ]; then
    cookie=(-H "Cookie: $(curl -ksi "$url" | awk '!found && tolower($1) == "set-cookie:" && $2 ~ /^ROUTEID=/ { sub(/;.*/, "", $2); print $2; found = 1 }')")
  fi
  local done
  done="$(timeout 60 h2load --h1 -n "$n" -c 8 "${cookie[@]}" "$url" | awk '/^requests:/ {print $8}')"
  if [ "${done:-0}" != "$n" ]; then
    echo "$url: ${done:-0} of $n requests succeeded" >&2
    kill -KILL "$pid" 2>/dev/null || true
    return 1
  fi
  kill -TERM "$pid" 2>/dev/null || true
  timeout 30 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$done $(awk '/^(summary|totals):/ {print $2; exit}' "$out")"
}
# instructions per request: per_request NAME URL COOKIE COMMAND...
per_request() {
  local name=$1 url=$2 sticky=$3
  shift 3
  local low high
  low="$(run_once "$RUNDIR/cg.$name.low" "$LOW" "$url" "$sticky" "$@")"
  high="$(run_once "$RUNDIR/cg.$name.high" "$HIGH" "$url" "$sticky" "$@")"
  read -r n1 i1 <<<"$low"
  read -r n2 i2 <<<"$high"
  echo $(((i2 - i1) / (n2 - n1)))
}
per_pick() { # strategy
  local i1 i2
  valgrind --tool=callgrind --callgrind-out-file="$RUNDIR/pk1" "$PICK" "$1" 0 >/dev/null 2>&1
  valgrind --tool=callgrind --callgrind-out-file="$RUNDIR/pk2" "$PICK" "$1" 100000 >/dev/null 2>&1
  i1="$(awk '/^(summary|totals):/ {print $2; exit}' "$RUNDIR/pk1")"
  i2="$(awk '/^(summary|totals):/ {print $2; exit}' "$RUNDIR/pk2")"
  echo $(((i2 - i1) / 100000))
}

floor=$(per_request floor "http://127.0.0.1:8280/" no \
  "$FLOOR" --listen 127.0.0.1:8280 --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 55)
plain=$(per_request plain "http://127.0.0.1:8281/" no "$BIN" --config "$RUNDIR/plain.toml" --workers 1)
sticky=$(per_request sticky "http://127.0.0.1:8281/" yes "$BIN" --config "$RUNDIR/plain.toml" --workers 1)
tls=$(per_request tls "https://127.0.0.1:8282/" no "$BIN" --config "$RUNDIR/tls.toml" --workers 1)
if [ "${SAME_TASK:-}" = 1 ]; then # the member client issue K allows, at its lower bound
  same=$(per_request same "http://127.0.0.1:8283/" no ./target/release/same_task_floor \
    --listen 127.0.0.1:8283 --member 127.0.0.1:9763 --member 127.0.0.1:9764 --seconds 55)
fi
rr=$(per_pick round-robin)
p2c=$(per_pick p2c)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')"
echo "instructions per request (difference of $LOW and $HIGH requests, h2load --h1 -c 8, --profile bench):"
echo "  hyper floor          $floor"
if [ -n "${same:-}" ]; then
  echo "  same-task floor      $same   ($(ratio "$same" "$floor") x floor; benches/src/bin/same_task_floor.rs)"
fi
echo "  binary, plain        $plain   ($(ratio "$plain" "$floor") x floor)"
echo "  binary, route cookie $sticky   ($(ratio "$sticky" "$floor") x floor)"
echo "  binary, TLS front    $tls   ($(ratio "$tls" "$floor") x floor)"
echo "instructions per pick (16 members): round robin $rr, power of two choices $p2c"

CEILINGS=scripts/instruction-ceilings
if [ "${1:-}" = --update ]; then
  {
    echo "# Ceilings for scripts/instructions-check.sh (CI fails above them): the HTTP paths as"
    echo "# a ratio to hyper's floor in the same run, picks in instructions. Written by"
    echo "# \`scripts/instructions-check.sh --update\` from a run's figures plus 5%; lower them as"
    echo "# the path gets cheaper, never raise them without saying why in the commit."
    echo "plain_ratio $(awk -v a="$plain" -v b="$floor" 'BEGIN { printf "%.2f", a / b * 1.05 }')"
    echo "sticky_ratio $(awk -v a="$sticky" -v b="$floor" 'BEGIN { printf "%.2f", a / b * 1.05 }')"
    echo "tls_ratio $(awk -v a="$tls" -v b="$floor" 'BEGIN { printf "%.2f", a / b * 1.05 }')"
    echo "pick_round_robin $((rr * 105 / 100))"
    echo "pick_p2c $((p2c * 105 / 100))"
  } >"$CEILINGS"
  echo "wrote $CEILINGS"
  exit 0
fi
fail=0
check() { # key value
  local ceiling
  ceiling="$(awk -v k="$1" '$1 == k { print $2 }' "$CEILINGS")"
  if [ -z "$ceiling" ]; then
    echo "FAIL: no ceiling for $1 in $CEILINGS" >&2
    fail=1
    return
  fi
  if awk -v v="$2" -v c="$ceiling" 'BEGIN { exit !(v > c) }'; then
    echo "FAIL: $1 is $2, over its ceiling $ceiling" >&2
    fail=1
  else
    echo "ok: $1 $2 (ceiling $ceiling)"
  fi
}
check plain_ratio "$(ratio "$plain" "$floor")"
check sticky_ratio "$(ratio "$sticky" "$floor")"
check tls_ratio "$(ratio "$tls" "$floor")"
check pick_round_robin "$rr"
check pick_p2c "$p2c"
exit "$fail"
