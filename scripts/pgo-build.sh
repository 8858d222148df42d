#!/usr/bin/env bash
# A profile-guided (PGO) release build of the `tower-balancer` binary, for distributions and
# release artifacts: target/pgo/x86_64-unknown-linux-gnu/dist/tower-balancer (or the host's
# triple).
# Why: the binary runs ~5% more instructions than the hyper floor but spends ~30% more user
# time, and callgrind's cache simulator (scripts/cache-sim.sh) puts the difference in
# instruction- and data-cache misses: the stack's code is spread over many small functions.
# A profile lets LLVM lay the hot path out together and inline by measured use; the code is
# the same, only where it sits in the binary changes.
# How: build with `-Cprofile-generate`, run that binary from a config file with its
# defaults over a mix of what it serves (plain, sticky cookie, request bodies, TLS, HTTP/2
# over TLS, a member that dies and comes back) against the two nginx members of
# scripts/backends.sh, merge the profiles with the llvm-profdata of rustc's LLVM, and
# build again with `-Cprofile-use`. `--target` keeps the flags off build scripts and proc
# macros. Bounded: about 8 minutes on 2 cores (two fat-LTO builds, ~40 s of load).
# Needs 127.0.0.1 ports 9763, 9764 (the members), 8297 and 8447 free, and root to install
# what is missing from Debian's packages (it says what, and stops, otherwise).
# Usage: scripts/pgo-build.sh; compare it with the plain `--profile dist` build by
# `BIN=target/pgo/<triple>/dist/tower-balancer scripts/compare.sh` or scripts/ab-cpu.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LLVM="$(rustc -vV | awk '/^LLVM version/ { split($3, v, "."); print v[1] }')"
TRIPLE="$(rustc -vV | awk '/^host/ { print $2 }')"
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk curl:curl openssl:openssl h2load:nghttp2-client \
  "llvm-profdata-$LLVM:llvm-$LLVM"
OUT="$PWD/target/pgo"
PROFILES="$OUT/profiles"
rm -rf "$PROFILES"
mkdir -p "$PROFILES"

echo "1/3 the instrumented build"
RUSTFLAGS="-Cprofile-generate=$PROFILES" CARGO_TARGET_DIR="$OUT/gen" \
  cargo build -q --profile dist -p tower-balancer-bin --target "$TRIPLE"
GEN="$OUT/gen/$TRIPLE/dist/tower-balancer"

echo "2/3 the training load"
start_backends
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wso2.com \
  -keyout "$RUNDIR/lb.key" -out "$RUNDIR/lb.crt" 2>/dev/null
binary_toml 8297 >"$RUNDIR/plain.toml"
binary_toml 8447 "certificate = \"$RUNDIR/lb.crt\"
key = \"$RUNDIR/lb.key\"" >"$RUNDIR/tls.toml"
printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 2048)\nwrk.headers["Content-Type"] = "text/plain"\n' \
  >"$RUNDIR/post.lua"
"$GEN" --config "$RUNDIR/plain.toml" --workers 1 >/dev/null 2>&1 &
echo $! >"$RUNDIR/plain.pid"
"$GEN" --config "$RUNDIR/tls.toml" --workers 1 >/dev/null 2>&1 &
echo $! >"$RUNDIR/tls.pid"
wait_ready http://127.0.0.1:8297/
wait_ready https://127.0.0.1:8447/ -k
COOKIE="$(curl -si http://127.0.0.1:8297/ | awk '!found && tolower($1) == "set-cookie:" && $2 ~ /^ROUTEID=/ { sub(/;.*/, "", $2); print $2; found = 1 }')"
[ -n "$COOKIE" ] || { echo "the binary set no ROUTEID cookie" >&2; exit 1; }
wrk -t1 -c64 -d8s http://127.0.0.1:8297/ >/dev/null
wrk -t1 -c64 -d6s -H "Cookie: $COOKIE" http://127.0.0.1:8297/ >/dev/null
wrk -t1 -c16 -d3s -s "$RUNDIR/post.lua" http://127.0.0.1:8297/ >/dev/null
wrk -t1 -c64 -d6s https://127.0.0.1:8447/ >/dev/null
h2load -c16 -m10 -D5 https://127.0.0.1:8447/ >/dev/null
# a member that dies and comes back: failover, ejection and the probes' way back
kill "$(cat "$RUNDIR/backend2.pid")"
wrk -t1 -c16 -d3s http://127.0.0.1:8297/ >/dev/null || true
nginx -c "$RUNDIR/backend2.conf" -p "$RUNDIR"
sleep 2
wrk -t1 -c64 -d3s http://127.0.0.1:8297/ >/dev/null
# a clean exit writes the profiles
for p in plain tls; do kill -TERM "$(cat "$RUNDIR/$p.pid")"; done
for p in plain tls; do
  while kill -0 "$(cat "$RUNDIR/$p.pid")" 2>/dev/null; do sleep 0.1; done
done
ls "$PROFILES"/*.profraw >/dev/null || { echo "no profile was written" >&2; exit 1; }
"llvm-profdata-$LLVM" merge -o "$OUT/merged.profdata" "$PROFILES"/*.profraw
# the members are not needed for the build: stop them now, not at exit
cleanup
trap - EXIT

echo "3/3 the build from the profile"
RUSTFLAGS="-Cprofile-use=$OUT/merged.profdata" CARGO_TARGET_DIR="$OUT" \
  cargo build -q --profile dist -p tower-balancer-bin --target "$TRIPLE"
echo "built: $OUT/$TRIPLE/dist/tower-balancer"
