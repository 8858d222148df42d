#!/usr/bin/env bash
# Side by side on loopback: the `tower-balancer` binary as operators run it (from a TOML
# file, `--profile dist`, its defaults: "bin", "bin-cookie", "bin-tls"), and
# examples/lb_bench (the whole stack, sticky + failover + balance + forward, a
# single-threaded runtime per thread, tuned by hand: "ours*") against nginx and
# HAProxy with the anchors' configs (../shared/anchors: round robin, keep-alive to members,
# HAProxy's sticky cookie), on the same two nginx backends, with the same load
# (wrk -t1 -c64 -d8s), every target in turn, twice. Plain and TLS front (RSA 2048); with and
# without a sticky cookie sent by the client (nginx has none in its open-source build).
# Also ours with nginx's config ("ours-rr": balance + forward, round robin, no sticky layer),
# and benches/src/bin/hyper_floor.rs (hyper server + hyper-util client and nothing else), one thread;
# and the Rust peer, axum-reverse-proxy's round-robin BalancedProxy on axum, one thread
# (benches/peers/axum-reverse-proxy, its own workspace, built into target/peers).
# Prints req/s, p50, p99, the balancer's own CPU time per request (user and sys, from
# /proc), peak RSS per balancer, and the ratios of ours to the best other. Then a TLS +
# HTTP/2 front (h2load from nghttp2-client, 64 connections x 10 streams): nginx, HAProxy and
# the binary.
# Then the same load with each balancer held to an equal CPU budget (a cgroup CPU quota of
# 0.4 of a core per worker thread, given to one balancer at a time): there the balancer, not
# wrk or the members sharing its cores, is the bottleneck, so req/s is its own capacity at
# equal worker threads. Needs root and the cgroup cpu controller (v1 or v2); skipped without.
# Ours is built as a deployment would build it: `--profile perf` (fat LTO, one codegen unit)
# with mimalloc as its allocator (nginx and HAProxy bring their own allocators too).
# First, scripts/failover.sh: a member killed and restarted under the same load through each
# balancer (errors per balancer, ours as operators run it from a file).
# Usage: scripts/compare.sh [threads]   (bounded: about fourteen minutes; stops everything it started)
#        SKIP_FAILOVER=1 scripts/compare.sh   (without the failover run first)
#        PGO_BIN=target/pgo/<triple>/dist/tower-balancer scripts/compare.sh   (also the
#        profile-guided build of scripts/pgo-build.sh, from the same files: "pgo", "pgo-cookie",
#        "pgo-tls", "pgo-h2", in the same run as the plain `--profile dist` build)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-1}"
if [ -z "${SKIP_FAILOVER:-}" ]; then
  bash scripts/failover.sh
  sleep 1 # its members' ports are free again
fi
# shellcheck source=scripts/backends.sh
. scripts/backends.sh
ensure_tools nginx:nginx-light wrk:wrk haproxy:haproxy h2load:nghttp2-client
start_backends
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wso2.com \
  -keyout "$RUNDIR/lb.key" -out "$RUNDIR/lb.crt" 2>/dev/null
cat "$RUNDIR/lb.crt" "$RUNDIR/lb.key" >"$RUNDIR/lb.pem"

nginx_lb_conf "$THREADS" "" "  server { listen 127.0.0.1:8082; $NGINX_PROXY }
  server { listen 127.0.0.1:8442 ssl; ssl_certificate $RUNDIR/lb.crt; ssl_certificate_key $RUNDIR/lb.key;
    $NGINX_PROXY }
  server { listen 127.0.0.1:8447 ssl http2; ssl_certificate $RUNDIR/lb.crt; ssl_certificate_key $RUNDIR/lb.key;
    $NGINX_PROXY }" >"$RUNDIR/lb-nginx.conf"
nginx -c "$RUNDIR/lb-nginx.conf" -p "$RUNDIR"

haproxy_lb_cfg "$THREADS" "  bind 127.0.0.1:8083
  bind 127.0.0.1:8444 ssl crt $RUNDIR/lb.pem
  bind 127.0.0.1:8448 ssl crt $RUNDIR/lb.pem alpn h2,http/1.1" "" >"$RUNDIR/lb-haproxy.cfg"
haproxy -D -f "$RUNDIR/lb-haproxy.cfg"

cargo build -q --profile perf -p tower-balancer-proxy --example lb_bench
cargo build -q --profile perf -p benches --bin hyper_floor
LB=./target/perf/examples/lb_bench
MEMBERS=(--member 127.0.0.1:9763 --member 127.0.0.1:9764)
$LB --listen 127.0.0.1:8091 "${MEMBERS[@]}" --threads "$THREADS" --per-core --sticky --seconds 900 >"$RUNDIR/ours.out" &
echo $! >"$RUNDIR/ours.pid"
$LB --listen 127.0.0.1:8443 "${MEMBERS[@]}" --threads "$THREADS" --per-core --sticky --seconds 900 \
  --cert "$RUNDIR/lb.crt" --key "$RUNDIR/lb.key" >/dev/null &
echo $! >"$RUNDIR/ourstls.pid"
# nginx's config in ours: round robin and keep-alive, no sticky layer (nginx's open-source
# build has none) and so no cookie set on every response
$LB --listen 127.0.0.1:8093 "${MEMBERS[@]}" --threads "$THREADS" --per-core --seconds 900 >/dev/null &
echo $! >"$RUNDIR/oursrr.pid"
$LB --listen 127.0.0.1:8445 "${MEMBERS[@]}" --threads "$THREADS" --per-core --seconds 900 \
  --cert "$RUNDIR/lb.crt" --key "$RUNDIR/lb.key" >/dev/null &
echo $! >"$RUNDIR/oursrrtls.pid"
# the binary operators run, from a file with nothing tuned: defaults (sticky cookie signed,
# failover, ejection, retry budget, request ids, body timeouts), `--workers` as the others
cargo build -q --profile dist -p tower-balancer-bin
head -c 32 /dev/urandom >"$RUNDIR/cookie.key"
bin_conf() { # listen [tls lines]
  printf '[server]\nlisten = "%s"\nserver_name = "wso2.com"\n%s\n[balancer]\nname = "bench"\ncookie_key_file = "%s"\n\n' "$1" "${2:-}" "$RUNDIR/cookie.key"
  members_toml
}
bin_conf 127.0.0.1:8095 >"$RUNDIR/bin.toml"
bin_conf 127.0.0.1:8446 "certificate = \"$RUNDIR/lb.crt\"
key = \"$RUNDIR/lb.key\"" >"$RUNDIR/bin-tls.toml"
./target/dist/tower-balancer --check "$RUNDIR/bin.toml" >/dev/null
./target/dist/tower-balancer --config "$RUNDIR/bin.toml" --workers "$THREADS" >/dev/null 2>&1 &
echo $! >"$RUNDIR/bin.pid"
./target/dist/tower-balancer --config "$RUNDIR/bin-tls.toml" --workers "$THREADS" >/dev/null 2>&1 &
echo $! >"$RUNDIR/bintls.pid"
if [ -n "${PGO_BIN:-}" ]; then
  bin_conf 127.0.0.1:8097 >"$RUNDIR/pgo.toml"
  bin_conf 127.0.0.1:8449 "certificate = \"$RUNDIR/lb.crt\"
key = \"$RUNDIR/lb.key\"" >"$RUNDIR/pgo-tls.toml"
  "$PGO_BIN" --config "$RUNDIR/pgo.toml" --workers "$THREADS" >/dev/null 2>&1 &
  echo $! >"$RUNDIR/pgo.pid"
  "$PGO_BIN" --config "$RUNDIR/pgo-tls.toml" --workers "$THREADS" >/dev/null 2>&1 &
  echo $! >"$RUNDIR/pgotls.pid"
fi
# the floor under any hyper-based balancer, and the Rust peer (one thread each: compared at
# --threads 1 only)
./target/perf/hyper_floor --listen 127.0.0.1:8092 "${MEMBERS[@]}" --seconds 900 >/dev/null &
echo $! >"$RUNDIR/floor.pid"
CARGO_TARGET_DIR=target/peers cargo build -q --release --manifest-path benches/peers/axum-reverse-proxy/Cargo.toml
./target/peers/release/axum-reverse-proxy-peer 127.0.0.1:8096 http://127.0.0.1:9763 http://127.0.0.1:9764 >/dev/null &
echo $! >"$RUNDIR/axumrp.pid"
sleep 1.5
# the signed route cookie that pins to node1 (lb_bench prints it; its key is fixed)
OURS_COOKIE="$(grep -m1 '^ROUTEID=' "$RUNDIR/ours.out")"
# the binary's: the cookie it sets on its first answer
BIN_COOKIE="$(curl -si http://127.0.0.1:8095/ | awk '!found && tolower($1) == "set-cookie:" && $2 ~ /^ROUTEID=/ { sub(/;.*/, "", $2); print $2; found = 1 }')"
[ -n "$BIN_COOKIE" ] || { echo "the binary set no ROUTEID cookie" >&2; exit 1; }

# name url [cookie]
TARGETS=(
  "nginx http://127.0.0.1:8082/"
  "haproxy http://127.0.0.1:8083/"
  "ours http://127.0.0.1:8091/"
  "haproxy-cookie http://127.0.0.1:8083/ ROUTEID=node1"
  "ours-cookie http://127.0.0.1:8091/ $OURS_COOKIE"
  "nginx-tls https://127.0.0.1:8442/"
  "haproxy-tls https://127.0.0.1:8444/"
  "ours-tls https://127.0.0.1:8443/"
  "ours-rr http://127.0.0.1:8093/"
  "ours-rr-tls https://127.0.0.1:8445/"
  "bin http://127.0.0.1:8095/"
  "bin-cookie http://127.0.0.1:8095/ $BIN_COOKIE"
  "bin-tls https://127.0.0.1:8446/"
)
if [ -n "${PGO_BIN:-}" ]; then
  PGO_COOKIE="$(curl -si http://127.0.0.1:8097/ | awk '!found && tolower($1) == "set-cookie:" && $2 ~ /^ROUTEID=/ { sub(/;.*/, "", $2); print $2; found = 1 }')"
  TARGETS+=("pgo http://127.0.0.1:8097/" "pgo-cookie http://127.0.0.1:8097/ $PGO_COOKIE" "pgo-tls https://127.0.0.1:8449/")
fi
if [ "$THREADS" = 1 ]; then TARGETS+=("hyper-floor http://127.0.0.1:8092/" "axum-rp http://127.0.0.1:8096/"); fi
for t in "${TARGETS[@]}"; do
  read -r _ url _ <<<"$t"
  curl -skf "$url" >/dev/null || { echo "no answer from $url" >&2; exit 1; }
  wrk -t1 -c64 -d2s "$url" >/dev/null # warm up pools
done

pidof_target() { # target name -> the balancer's pid file
  case "$1" in
    nginx*) echo "$RUNDIR/lbnginx.pid" ;;
    haproxy*) echo "$RUNDIR/haproxy.pid" ;;
    bin-tls | bin-h2) echo "$RUNDIR/bintls.pid" ;; # the TLS front serves h2 as well
    bin*) echo "$RUNDIR/bin.pid" ;;
    pgo-tls | pgo-h2) echo "$RUNDIR/pgotls.pid" ;;
    pgo*) echo "$RUNDIR/pgo.pid" ;;
    ours-tls) echo "$RUNDIR/ourstls.pid" ;;
    ours-rr) echo "$RUNDIR/oursrr.pid" ;;
    ours-rr-tls) echo "$RUNDIR/oursrrtls.pid" ;;
    ours*) echo "$RUNDIR/ours.pid" ;;
    hyper-floor) echo "$RUNDIR/floor.pid" ;;
    axum-rp) echo "$RUNDIR/axumrp.pid" ;;
  esac
}
run() { # name url [cookie] -> "name req/s p50 p99 user-µs/req sys-µs/req"
  local out pid u1 s1 u2 s2
  pid="$(cat "$(pidof_target "$1")")"
  read -r u1 s1 < <(cpu_ticks "$pid")
  if [ -n "${3:-}" ]; then
    out="$(wrk -t1 -c64 -d8s --latency -H "Cookie: $3" "$2")"
  else
    out="$(wrk -t1 -c64 -d8s --latency "$2")"
  fi
  read -r u2 s2 < <(cpu_ticks "$pid")
  local rps p50 p99 reqs hz
  rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  hz="$(getconf CLK_TCK)"
  # the balancer's own CPU time per request: what it costs, whatever the others on the
  # machine take (req/s depends on them, this much less)
  echo "$1 $rps $p50 $p99 $(awk -v u=$((u2 - u1)) -v s=$((s2 - s1)) -v n="$reqs" -v hz="$hz" \
    'BEGIN { printf "%.1f %.1f", u * 1e6 / hz / n, s * 1e6 / hz / n }')"
}
{
  for round in 1 2; do
    for t in "${TARGETS[@]}"; do run ${t}; done
  done
} | tee "$RUNDIR/results"

# HTTP/2 over TLS, what browsers use: h2load, 64 connections with 10 streams each, 8 s,
# against nginx (http2 on), HAProxy (alpn h2) and the binary (its TLS front offers h2)
run_h2() { # name url -> "name req/s user-µs/req sys-µs/req"
  local out pid u1 s1 u2 s2 reqs hz
  pid="$(cat "$(pidof_target "$1")")"
  read -r u1 s1 < <(cpu_ticks "$pid")
  out="$(h2load -c64 -m10 -D8 "$2")"
  read -r u2 s2 < <(cpu_ticks "$pid")
  grep -qi "application protocol: h2" <<<"$out" || { echo "$1: no h2 at $2" >&2; exit 1; }
  reqs="$(awk '/^requests:/ {print $8}' <<<"$out")"
  hz="$(getconf CLK_TCK)"
  echo "$1 $(awk '/^finished in/ {print $4}' <<<"$out") $(awk -v u=$((u2 - u1)) -v s=$((s2 - s1)) -v n="$reqs" -v hz="$hz" \
    'BEGIN { printf "%.1f %.1f", u * 1e6 / hz / n, s * 1e6 / hz / n }')"
}
H2_TARGETS=("nginx-h2 https://127.0.0.1:8447/" "haproxy-h2 https://127.0.0.1:8448/" "bin-h2 https://127.0.0.1:8446/")
if [ -n "${PGO_BIN:-}" ]; then H2_TARGETS+=("pgo-h2 https://127.0.0.1:8449/"); fi
echo
echo "TLS + HTTP/2 front (h2load -c64 -m10 -D8), twice: name req/s user-µs/req sys-µs/req"
{
  for round in 1 2; do
    for t in "${H2_TARGETS[@]}"; do run_h2 ${t}; done
  done
} | tee "$RUNDIR/h2"
awk '{ sum[$1] += $2; n[$1]++; runs[$1] = runs[$1] " " $2; cu[$1] += $3; cs[$1] += $4 }
  END {
    for (t in sum) { mean[t] = sum[t] / n[t]; printf "%-15s req/s runs:%s  mean %.0f  CPU µs/request user %.1f sys %.1f\n", t, runs[t], mean[t], cu[t] / n[t], cs[t] / n[t] }
    printf "the binary over HTTP/2, req/s ratio to nginx %.2f, to HAProxy %.2f;  CPU per request ratio to nginx %.2f, to HAProxy %.2f\n", mean["bin-h2"] / mean["nginx-h2"], mean["bin-h2"] / mean["haproxy-h2"], (cu["bin-h2"] + cs["bin-h2"]) / (cu["nginx-h2"] + cs["nginx-h2"]), (cu["bin-h2"] + cs["bin-h2"]) / (cu["haproxy-h2"] + cs["haproxy-h2"])
    if ("pgo-h2" in mean) printf "the PGO build over HTTP/2, req/s ratio to nginx %.2f;  CPU per request ratio to nginx %.2f\n", mean["pgo-h2"] / mean["nginx-h2"], (cu["pgo-h2"] + cs["pgo-h2"]) / (cu["nginx-h2"] + cs["nginx-h2"])
  }' "$RUNDIR/h2"

hwm() { # peak RSS in KiB of a pid and its children
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
echo
echo "peak RSS (KiB): nginx $(hwm "$(cat "$RUNDIR/lbnginx.pid")")" \
  "haproxy $(hwm "$(cat "$RUNDIR/haproxy.pid")")" \
  "ours $(hwm "$(cat "$RUNDIR/ours.pid")") (plain) + $(hwm "$(cat "$RUNDIR/ourstls.pid")") (TLS)" \
  "bin $(hwm "$(cat "$RUNDIR/bin.pid")") (plain) + $(hwm "$(cat "$RUNDIR/bintls.pid")") (TLS)" \
  "axum-reverse-proxy $(hwm "$(cat "$RUNDIR/axumrp.pid")")"
echo
cargo build -q --release -p tower-balancer-proxy --example pool_memory
./target/release/examples/pool_memory --member 127.0.0.1:9763 --connections 500
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'); worker threads: $THREADS"
awk '{ sum[$1] += $2; n[$1]++; runs[$1] = runs[$1] " " $2; if ($4 ~ /ms/) { sub(/ms/, "", $4); p99[$1] = p99[$1] " " $4 }
        cu[$1] += $5; cs[$1] += $6 }
  END {
    for (t in sum) { mean[t] = sum[t] / n[t]; printf "%-15s req/s runs:%s  mean %.0f  p99 ms:%s  CPU µs/request user %.1f sys %.1f\n", t, runs[t], mean[t], p99[t], cu[t] / n[t], cs[t] / n[t] }
    best = (mean["nginx"] > mean["haproxy"]) ? mean["nginx"] : mean["haproxy"]
    printf "ratio ours / best of nginx and HAProxy, plain:        %.2f\n", mean["ours"] / best
    printf "ratio ours / HAProxy, sticky cookie sent:              %.2f\n", mean["ours-cookie"] / mean["haproxy-cookie"]
    bt = (mean["nginx-tls"] > mean["haproxy-tls"]) ? mean["nginx-tls"] : mean["haproxy-tls"]
    printf "ratio ours / best of nginx and HAProxy, TLS front:    %.2f\n", mean["ours-tls"] / bt
    printf "ratio ours / nginx:   plain %.2f  TLS %.2f\n", mean["ours"] / mean["nginx"], mean["ours-tls"] / mean["nginx-tls"]
    printf "ratio ours with the nginx config (round robin, no sticky) / nginx:   plain %.2f  TLS %.2f\n", mean["ours-rr"] / mean["nginx"], mean["ours-rr-tls"] / mean["nginx-tls"]
    if ("hyper-floor" in mean) printf "ratio hyper floor / nginx (hyper server + hyper-util client, nothing else): %.2f\n", mean["hyper-floor"] / mean["nginx"]
    if ("axum-rp" in mean) printf "the binary / axum-reverse-proxy (the Rust peer): req/s %.2f  CPU per request %.2f\n", mean["bin"] / mean["axum-rp"], (cu["bin"] + cs["bin"]) / (cu["axum-rp"] + cs["axum-rp"])
    printf "ratio ours / HAProxy: plain %.2f  TLS %.2f  cookie %.2f\n", mean["ours"] / mean["haproxy"], mean["ours-tls"] / mean["haproxy-tls"], mean["ours-cookie"] / mean["haproxy-cookie"]
    printf "the binary, req/s ratio to nginx:   plain %.2f  TLS %.2f;  to HAProxy: plain %.2f  TLS %.2f  cookie %.2f\n", mean["bin"] / mean["nginx"], mean["bin-tls"] / mean["nginx-tls"], mean["bin"] / mean["haproxy"], mean["bin-tls"] / mean["haproxy-tls"], mean["bin-cookie"] / mean["haproxy-cookie"]
    printf "the binary, CPU per request ratio to nginx:   plain %.2f  TLS %.2f;  to HAProxy: plain %.2f  TLS %.2f  cookie %.2f\n", (cu["bin"] + cs["bin"]) / (cu["nginx"] + cs["nginx"]), (cu["bin-tls"] + cs["bin-tls"]) / (cu["nginx-tls"] + cs["nginx-tls"]), (cu["bin"] + cs["bin"]) / (cu["haproxy"] + cs["haproxy"]), (cu["bin-tls"] + cs["bin-tls"]) / (cu["haproxy-tls"] + cs["haproxy-tls"]), (cu["bin-cookie"] + cs["bin-cookie"]) / (cu["haproxy-cookie"] + cs["haproxy-cookie"])
    if ("pgo" in mean) {
      printf "the PGO build, req/s ratio to nginx:   plain %.2f  TLS %.2f;  to HAProxy: cookie %.2f\n", mean["pgo"] / mean["nginx"], mean["pgo-tls"] / mean["nginx-tls"], mean["pgo-cookie"] / mean["haproxy-cookie"]
      printf "the PGO build, CPU per request ratio to nginx:   plain %.2f  TLS %.2f;  to HAProxy: cookie %.2f\n", (cu["pgo"] + cs["pgo"]) / (cu["nginx"] + cs["nginx"]), (cu["pgo-tls"] + cs["pgo-tls"]) / (cu["nginx-tls"] + cs["nginx-tls"]), (cu["pgo-cookie"] + cs["pgo-cookie"]) / (cu["haproxy-cookie"] + cs["haproxy-cookie"])
      printf "the PGO build / the dist build, CPU per request:   plain %.2f  TLS %.2f  cookie %.2f\n", (cu["pgo"] + cs["pgo"]) / (cu["bin"] + cs["bin"]), (cu["pgo-tls"] + cs["pgo-tls"]) / (cu["bin-tls"] + cs["bin-tls"]), (cu["pgo-cookie"] + cs["pgo-cookie"]) / (cu["bin-cookie"] + cs["bin-cookie"])
    }
  }' "$RUNDIR/results"

# Equal CPU budget: one cgroup with a CPU quota, the balancer under test moved into it for its
# wrk run and back out after. With the quota spent, the kernel holds the balancer until the
# next period, so req/s = budget / the balancer's CPU per request; the throttled share shows
# that the quota, not the rest of the machine, was the limit.
CGV2="$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)"
CGV1="$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpu(,|$)/ {print $2; exit}' /proc/mounts)"
CG="" CGROOT=""
if [ -n "$CGV2" ] && grep -qw cpu "$CGV2/cgroup.controllers" 2>/dev/null; then
  CGROOT="$CGV2" CG="$CGV2/tb-budget"
  echo +cpu >"$CGV2/cgroup.subtree_control" 2>/dev/null || true
elif [ -n "$CGV1" ]; then
  CGROOT="$CGV1" CG="$CGV1/tb-budget"
fi
QUOTA=$((40000 * THREADS))
if [ -z "$CG" ] || ! mkdir -p "$CG" 2>/dev/null; then
  echo
  echo "equal CPU budget: skipped (needs root and the cgroup cpu controller)"
  exit 0
fi
trap 'for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do echo "$p" >"$CGROOT/cgroup.procs" 2>/dev/null || true; done; rmdir "$CG" 2>/dev/null || true; cleanup' EXIT
if [ -f "$CG/cpu.max" ]; then
  echo "$QUOTA 100000" >"$CG/cpu.max"
else
  echo 100000 >"$CG/cpu.cfs_period_us"
  echo "$QUOTA" >"$CG/cpu.cfs_quota_us"
fi
throttled_us() { # total time the group was held, in µs (v2: throttled_usec; v1: throttled_time ns)
  awk '$1 == "throttled_usec" {print $2} $1 == "throttled_time" {print int($2 / 1000)}' "$CG/cpu.stat"
}
move() { # pid-file group-dir: the balancer and its children (nginx's workers) into the group
  local p
  # a child that exited since it was listed (nginx respawns workers) is skipped, not fatal
  for p in $(cat "$1") $(pgrep -P "$(cat "$1")" || true); do echo "$p" >"$2/cgroup.procs" 2>/dev/null || true; done
}
budget_run() { # name url [cookie] -> "name req/s throttled-share"
  local pidfile out t1 t2
  pidfile="$(pidof_target "$1")"
  move "$pidfile" "$CG"
  t1="$(throttled_us)"
  if [ -n "${3:-}" ]; then
    out="$(wrk -t1 -c64 -d8s -H "Cookie: $3" "$2")"
  else
    out="$(wrk -t1 -c64 -d8s "$2")"
  fi
  t2="$(throttled_us)"
  move "$pidfile" "$CGROOT"
  echo "$1 $(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk -v t=$((t2 - t1)) 'BEGIN { printf "%.2f", t / 8e6 }')"
}
echo
echo "equal CPU budget: $QUOTA µs of CPU per 100 ms for the balancer under test ($THREADS worker thread(s) x 0.4 core)"
{
  for round in 1 2; do
    for t in "${TARGETS[@]}"; do budget_run ${t}; done
  done
} | tee "$RUNDIR/budget"
awk '{ sum[$1] += $2; n[$1]++; runs[$1] = runs[$1] " " $2; th[$1] = th[$1] " " $3 }
  END {
    for (t in sum) { mean[t] = sum[t] / n[t]; printf "%-15s req/s runs:%s  mean %.0f  share of the run held by the quota:%s\n", t, runs[t], mean[t], th[t] }
    printf "equal CPU budget, ratio ours / nginx:   plain %.2f  TLS %.2f\n", mean["ours"] / mean["nginx"], mean["ours-tls"] / mean["nginx-tls"]
    printf "equal CPU budget, ratio ours with the nginx config / nginx:   plain %.2f  TLS %.2f\n", mean["ours-rr"] / mean["nginx"], mean["ours-rr-tls"] / mean["nginx-tls"]
    if ("hyper-floor" in mean) printf "equal CPU budget, ratio hyper floor / nginx: %.2f\n", mean["hyper-floor"] / mean["nginx"]
    printf "equal CPU budget, ratio ours / HAProxy: plain %.2f  TLS %.2f  cookie %.2f\n", mean["ours"] / mean["haproxy"], mean["ours-tls"] / mean["haproxy-tls"], mean["ours-cookie"] / mean["haproxy-cookie"]
    printf "equal CPU budget, the binary / nginx: plain %.2f  TLS %.2f;  / HAProxy: plain %.2f  TLS %.2f  cookie %.2f\n", mean["bin"] / mean["nginx"], mean["bin-tls"] / mean["nginx-tls"], mean["bin"] / mean["haproxy"], mean["bin-tls"] / mean["haproxy-tls"], mean["bin-cookie"] / mean["haproxy-cookie"]
    if ("pgo" in mean) printf "equal CPU budget, the PGO build / nginx: plain %.2f  TLS %.2f;  / HAProxy: cookie %.2f\n", mean["pgo"] / mean["nginx"], mean["pgo-tls"] / mean["nginx-tls"], mean["pgo-cookie"] / mean["haproxy-cookie"]
  }' "$RUNDIR/budget"
