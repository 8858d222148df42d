# Sourced by the scripts that measure: installs what is missing from Debian's packages
# (`ensure_tools CMD:PACKAGE ...`), makes a scratch directory whose started processes are
# stopped on exit ($RUNDIR, every *.pid in it), and starts the two nginx members both
# measure against (`start_backends`: 127.0.0.1:9763 and :9764, "node1\n" and "node2\n"),
# writes them as the binary's members (`members_toml`), waits for a started balancer to
# answer (`wait_ready URL [CURL-ARGS]`),
# and writes nginx and HAProxy as balancers with the anchors' configs (`nginx_lb_conf`,
# `haproxy_lb_cfg`).
need() { command -v "$1" >/dev/null 2>&1; }
ensure_tools() {
  local missing=() t
  for t in "$@"; do need "${t%%:*}" || missing+=("${t#*:}"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "missing: ${missing[*]} (Debian packages): install them (apt-get install ${missing[*]}, as root) and run again" >&2
    exit 1
  fi
  echo "missing: ${missing[*]}: installing them with apt-get" >&2
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
}
RUNDIR="$(mktemp -d)"
cleanup() {
  for pid in "$RUNDIR"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  rm -rf "$RUNDIR"
}
trap cleanup EXIT
# members_toml: the two members above as the binary's [[balancer.member]] tables.
members_toml() {
  printf '[[balancer.member]]\nurl = "http://127.0.0.1:9763"\nroute = "node1"\n\n[[balancer.member]]\nurl = "http://127.0.0.1:9764"\nroute = "node2"\n'
}
# binary_toml PORT [SERVER-LINES]: the `tower-balancer` binary's config file as the scripts run
# it: its defaults, listening on 127.0.0.1:PORT, the two members above, a cookie key made
# once in RUNDIR; SERVER-LINES (e.g. a certificate and key) go into [server].
binary_toml() {
  [ -f "$RUNDIR/cookie.key" ] || head -c 32 /dev/urandom >"$RUNDIR/cookie.key"
  printf '[server]\nlisten = "127.0.0.1:%s"\nserver_name = "wso2.com"\n%s\n\n[balancer]\nname = "bench"\ncookie_key_file = "%s"\n\n' "$1" "${2:-}" "$RUNDIR/cookie.key"
  members_toml
}
# wait_ready URL [CURL-ARGS...]: waits up to 10 s for URL to answer 2xx (a balancer just
# started); fails when it never does, so a script does not measure a balancer that is down.
wait_ready() {
  local url="$1" _
  shift
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$@" "$url" && return 0
    sleep 0.1
  done
  echo "$url did not answer within 10 s" >&2
  return 1
}
start_backends() {
  local n port
  for n in 1 2; do
    port=$((9762 + n))
    cat >"$RUNDIR/backend$n.conf" <<CONF
worker_processes 1;
pid $RUNDIR/backend$n.pid;
error_log $RUNDIR/backend$n.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; location / { add_header X-Node node$n; return 200 "node$n\n"; } } }
CONF
    nginx -c "$RUNDIR/backend$n.conf" -p "$RUNDIR"
  done
}
# nginx_lb_conf WORKERS "extra top-level lines" "server blocks" -> the config on stdout:
# round robin over the two members with keep-alive 64, as ../shared/anchors/lb-nginx.conf
nginx_lb_conf() {
  cat <<CONF
worker_processes $1;
$2
pid $RUNDIR/lbnginx.pid;
error_log $RUNDIR/lbnginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream cluster { server 127.0.0.1:9763; server 127.0.0.1:9764; keepalive 64; }
$3
}
CONF
}
# haproxy_lb_cfg THREADS "bind lines" "server options" -> the config on stdout: the anchors'
# HAProxy (../shared/anchors/lb-haproxy.cfg): round robin, cookie insert, redispatch
haproxy_lb_cfg() {
  cat <<CONF
global
  maxconn 4000
  nbthread $1
  pidfile $RUNDIR/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
$2
  default_backend be
backend be
  balance roundrobin
  option redispatch
  retries 3
  retry-on all-retryable-errors
  cookie ROUTEID insert indirect nocache
  http-reuse always
  server node1 127.0.0.1:9763 cookie node1 check $3
  server node2 127.0.0.1:9764 cookie node2 check $3
CONF
}
cpu_ticks() { # pid -> "user sys" clock ticks of it and its children (nginx's workers)
  local u=0 s=0 p a b
  for p in "$1" $(pgrep -P "$1" || true); do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
    u=$((u + a)); s=$((s + b))
  done
  echo "$u $s"
}
# the location every nginx balancer server block uses
NGINX_PROXY='location / { proxy_pass http://cluster; proxy_http_version 1.1; proxy_set_header Connection ""; }'
