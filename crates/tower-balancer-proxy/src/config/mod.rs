//! A balancer from a TOML file that mirrors an Apache virtual host (the `config` feature).
//!
//! Why a file: operators who run Apache's `mod_proxy_balancer` already have their cluster
//! written down as a `<VirtualHost>` with a `<Proxy balancer://…>` in it. The same settings,
//! one key per directive, let the same binary front real nodes without writing Rust, and let
//! a reviewer compare the two line by line.
//!
//! ```toml
//! [server]                                   # <VirtualHost 127.0.0.1:8443>
//! listen = "127.0.0.1:8443"
//! server_name = "wso2.com"                   # ServerName
//! certificate = "certs/wso2.com.pem"         # SSLCertificateFile
//! key = "certs/wso2.com.key"                 # SSLCertificateKeyFile
//!
//! [balancer]                                 # <Proxy balancer://wso2isbalancer>
//! name = "wso2isbalancer"
//! lbmethod = "byrequests"
//! stickysession = "JSESSIONID|jsessionid"
//! trust_roots = ["certs/ca.pem"]             # SSLProxyCACertificateFile
//!
//! [[balancer.member]]                        # BalancerMember https://abc.com:9443 route=node1
//! url = "https://abc.com:9443"
//! route = "node1"
//! resolve = ["127.0.0.1:9443"]               # the /etc/hosts line, inside the process
//!
//! [[balancer.member]]
//! url = "https://xyz.com:9444"
//! route = "node2"
//! resolve = ["127.0.0.1:9444"]
//!
//! [balancer.health]                          # mod_proxy_hcheck
//! uri = "/carbon/admin/login.jsp"
//! interval = "2s"
//!
//! [manager]                                  # <Location /balancer-manager>
//! listen = "127.0.0.1:9000"
//! ```
//!
//! | Apache directive | key |
//! |---|---|
//! | `Listen` / `<VirtualHost addr:port>` | `server.listen` (required: an IP address and port; host names are not looked up) |
//! | `ServerName` | `server.server_name` (required: the public host name, optionally with a port, which `ProxyPassReverse` rewrites to) |
//! | `SSLEngine on`, `SSLCertificateFile`, `SSLCertificateKeyFile` | `server.certificate`, `server.key` (both or neither) |
//! | `RequestReadTimeout header=` | `server.header_read_timeout` |
//! | `LimitRequestFieldSize`, `LimitRequestFields` | `server.max_header_bytes`, `server.max_headers` |
//! | `GracefulShutdownTimeout` | `server.graceful_timeout` |
//! | `CustomLog` | `server.access_log` (`"stdout"` or a file; off when absent), `server.access_log_format` (`"combined"`, the default, or `"json"`) |
//! | `RequestReadTimeout body=` (nginx `client_body_timeout`) | `server.request_body_timeout` (default 60 s; 408) |
//! | (nginx `send_timeout`) | `server.send_timeout` (60 s: a response the client reads nothing of is cut off) |
//! | (HAProxy `maxconn`) | `server.max_connections` (default: half the open-file limit after 64; shared by the workers) |
//! | (nginx `http2_max_concurrent_streams`, HAProxy `tune.h2.fe.max-concurrent-streams`) | `server.http2_max_streams` (default 100, as HAProxy's; hyper's own is 200: streams open at once on one HTTP/2 connection, announced to clients, who queue past it; each may hold a member exchange while it waits on its client) |
//! | (nginx `http2_max_concurrent_streams`, for uploads alone) | `server.http2_max_uploads` (default 16: requests on one HTTP/2 connection that stream their bodies to members at once, each holding a member connection; the body of one past it is read whole first, 4 MiB a connection at most, or the stream is reset `REFUSED_STREAM` for its client to send again) |
//! | (nginx `limit_req`, `limit_conn`; HAProxy stick tables) | `[server.per_client]`: `rate` (requests a second a client; 429 with `Retry-After` past it), `burst` (the rate, rounded up), `connections` (open at once; one past it is closed at accept), `clients` (65,536 remembered); off when absent; the client is found under `balancer.trusted_proxies`, an IPv6 /64 counts as one |
//! | (nginx `worker_processes`) | `server.workers` (runtimes, each with its own `SO_REUSEPORT` listener; default 1 in the library, the number of cores in the `tower-balancer` binary) |
//! | `<Proxy balancer://name>` | `balancer.name` |
//! | several `<Proxy balancer://…>` | `[[balancer]]` tables (every key below, per balancer; errors name `balancer[i].…`), chosen by `[[vhost.route]]`'s `balancer`; names are unique |
//! | `ProxySet lbmethod=` (`byrequests`, `bybusyness`, `bytraffic`; ours: `p2c`, `random`) | `balancer.lbmethod` |
//! | `ProxySet stickysession=JSESSIONID\|jsessionid` | `balancer.stickysession` (default `"JSESSIONID\|jsessionid"`: the cookie, then the URL parameter; one name for both; `""` off) |
//! | `Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e"` (the ROUTEID recipe) | `balancer.cookie` (default `ROUTEID`), `balancer.cookie_plain`, `balancer.cookie_key_file` (without one, a key made at start signs cookies, so they are not recognised after a restart or by another instance; a warning says so) |
//! | `ProxySet nofailover=On` | `balancer.nofailover` |
//! | `ProxySet maxattempts=` | `balancer.maxattempts` (default 3, at most 15) |
//! | `ProxySet timeout=` | `balancer.timeout` (default 60 s a try, for response headers) |
//! | (nginx `proxy_read_timeout` on bodies) | `balancer.response_body_timeout` (default 60 s) |
//! | (nginx `proxy_send_timeout`) | `balancer.send_timeout` (default 60 s: a member that takes nothing written to it for this long has its connection closed) |
//! | (nginx `proxy_read_timeout` on WebSockets, Envoy's stream idle timeout) | `balancer.tunnel_idle_timeout` (default 5 min) |
//! | (nginx `max_fails`, Envoy outlier detection) | `[balancer.ejection]`: `connect_failures` (3), `consecutive_failures` (5), `base_time` (30 s), `max_time` (300 s), `max_fraction` (0.1); 0 turns a rule off; opt-in, Envoy's `failure_percentage`: `failure_percentage` (0, off; 1–100), `failure_percentage_requests` (50), `failure_percentage_interval` (10 s; at least 100 ms) |
//! | (linkerd retry budget) | `[balancer.retry_budget]`: `ratio` (0.2), `per_second` (10), `window` (10 s) |
//! | (HAProxy `slowstart`, Envoy slow start) | `balancer.slow_start` (a duration: members that join or recover reach full weight over it; off when absent) |
//! | (Envoy panic threshold) | `balancer.panic_threshold` (0.5; 0.0: every member down gives 503 at once) |
//! | (WebSocket allow-list) | `balancer.upgrades` (`["websocket"]`; `h2c` never) |
//! | (migration from the ROUTEID recipe) | `balancer.cookie_accept_apache` (true: signed mode also accepts Apache's `.node1`) |
//! | `BalancerMember … connectiontimeout=` | `balancer.connection_timeout` |
//! | `ProxySet failonstatus=` | `balancer.failonstatus` |
//! | `ProxyPreserveHost` | `balancer.preserve_host` |
//! | `ProxyPassReverse / balancer://name/` | `balancer.proxy_pass_reverse`, `balancer.public_url` |
//! | `ProxyPassReverseCookieDomain`, `ProxyPassReverseCookiePath` | `balancer.reverse_cookie_domain`, `balancer.reverse_cookie_path` (`{ from, to }` tables) |
//! | `SSLProxyEngine on`, `SSLProxyCACertificateFile` | `balancer.trust_roots` |
//! | `SSLProxyMachineCertificateFile` | `balancer.client_certificate`, `balancer.client_key` |
//! | `RemoteIPTrustedProxy` (mod_remoteip) | `balancer.trusted_proxies` |
//! | (nginx `proxy_pass_request_headers off` with `proxy_set_header`) | `balancer.pass_headers`: the only headers an untrusted client may send members, beside framing, body type and encoding, a WebSocket's handshake, `TE` and `X-Request-Id` |
//! | `BalancerMember url` | `balancer.member.url` |
//! | `route=` | `balancer.member.route` |
//! | `loadfactor=` | `balancer.member.loadfactor` |
//! | `lbset=` | `balancer.member.lbset` |
//! | `max=` (HAProxy `maxconn`, nginx `max_conns`) | `balancer.member.max` (requests in flight at once; 0, the default, for none) |
//! | `acquire=` (HAProxy `timeout queue`, `maxqueue`) | `balancer.queue_timeout` (10 s), `balancer.queue_length` (1024): requests past every member's `max` wait, then get 503 with `Retry-After` |
//! | `status=+D` / `+H` / `+N` | `balancer.member.status` (`+D`, `+H`, `+N` or `disabled`, `standby`, `draining`) |
//! | `/etc/hosts` entry for the member's name | `balancer.member.resolve` |
//! | `hcmethod=`, `hcuri=`, `hcinterval=`, `hcpasses=`, `hcfails=`, `hcexpr=` | `[balancer.health]`: `method` (`GET`; `HEAD`, `OPTIONS`, or `TCP` for a connect only), `uri` (`/`), `interval` (5 s, at least 100 ms), `timeout` (2 s a probe), `passes` (2), `fails` (2), `expect` (`"200-399"`) / `body_contains` (HTTP checks only), `initial` (`"down"`: members take traffic once they pass their first probe, sent at start; `"up"`); a health answer carrying an `x-lb-fail` header takes the member out at once (a member can announce its own shutdown) |
//! | `<VirtualHost>`s on one listener, `ServerName`, `ServerAlias` | `[[vhost]]` `names` (exact, or `*.example.com` for any name under it); a `Host` no host names goes to the first; a `Host` naming another host than the TLS name (SNI) gets 421 |
//! | their `SSLCertificateFile`, `SSLCertificateKeyFile` | `vhost.certificate`, `vhost.key`: presented to clients naming the host in TLS; other names get `server.certificate`, else the first host's |
//! | `ProxyPass /path balancer://name/inner` (and its `ProxyPassReverse`) | `[[vhost.route]]`, tried in the order written: `prefix` (whole segments, as Apache's: `/app` takes `/app/x`, not `/application`) or exact `path`, matched on the path with `%`-escapes of unreserved characters decoded, `//` merged and `.`/`..` resolved (what the member gets too; an encoded `/`, a `\`, `..` above the root or a `..;` segment is refused with 400), optionally `header = { name, value }`; `balancer`, with `rewrite_prefix = "/inner"` or `strip_prefix = true` (member `Location`, `Content-Location` and `URI` headers under it are mapped back); a path no route takes gets 404 |
//! | `Redirect [status] /path url`, `RedirectMatch ^/$ url` | a route's `redirect` and `status` (302; 301, 303, 307, 308): the rest of the path and the query are kept |
//! | `ProxyPass /path !`, a handler's fixed answer (nginx `return`) | a route's `respond` (200–599), `body`, `content_type` |
//! | `<Location /balancer-manager> SetHandler balancer-manager` | `manager.listen` (its own port; keep it on loopback or behind authentication), `manager.names` (host names it answers for besides `localhost` and its address) |
//! | (no Apache equivalent) a signing key list for several instances | `balancer.cookie_key_files` (first signs, all accepted) |
//! | (ours) consistent hashing of a header | `balancer.lbmethod = "maglev"` or `"ringhash"`, `balancer.hash_key` (needed by both, refused with any other method) |
//! | (ours) members from a watched file | `balancer.members_file`, `balancer.members_poll`, `balancer.drain` |
//! | (nginx `resolve`, HAProxy `server-template`) members from DNS | `[balancer.dns]`: `name` + `port`, or `srv`; `scheme`, `name_servers`, `ttl_floor`, `ttl_ceiling`, `remove_after`, `max_members`, `id_prefix` |
//! | (APISIX, Traefik) members from etcd | `[balancer.etcd]`: `endpoints`, `prefix`; `user` with `password` or `password_file`; `ca`, `certificate` + `key`, `tls_name` for TLS; `timeout`, `retry_max` (needs the `etcd` feature) |
//!
//! Relative file names are taken from the configuration file's directory. A mistake is
//! reported with the file, line and key:
//!
//! ```
//! use std::path::Path;
//! use tower_balancer_proxy::config::ConfigFile;
//!
//! let text = "[server]\nlisten = \"127.0.0.1:8443\"\nserver_name = \"wso2.com\"\n\
//!             [balancer]\nname = \"b\"\n[[balancer.member]]\nurl = \"ftp://abc.com\"\nroute = \"node1\"\n";
//! let err = ConfigFile::from_toml(text, Path::new("lb.toml")).unwrap_err();
//! assert_eq!(err.line(), Some(7));
//! assert_eq!(err.key(), Some("balancer.member[0].url"));
//! assert!(err.to_string().starts_with("lb.toml:7: `balancer.member[0].url`"));
//! ```
//!
//! Running it, with the front on a port the OS picks:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_balancer_proxy::config::ConfigFile;
//!
//! let mut balancer = ConfigFile::from_file("lb.toml")?.build()?;
//! balancer.set_listen("127.0.0.1:0".parse()?);
//! let bound = balancer.bind().await?;
//! println!("serving on {}", bound.local_addr()?);
//! bound.serve(std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod apache;
mod balancers;
mod bound;
mod build;
mod check;
mod discovery;
mod error;
mod etcd;
mod file;
mod headers;
mod members;
mod owned;
mod parts;
mod per_client;
mod plan;
mod reliability;
mod reload;
mod reload_lane;
mod reloader;
mod resolvable;
mod routes;
mod run;
mod strategy;
mod typed;
mod values;
mod workers;

pub use apache::{import_apache, ApacheSyntaxError, ImportError, ImportOptions, Imported};
pub use bound::Bound;
pub use build::{ConfigFile, MAX_CONFIG_BYTES};
pub use error::ConfigError;
pub use etcd::EtcdSection;
pub use file::{
    BalancerSection, DnsSection, FileConfig, HealthSection, LbMethod, ManagerSection,
    MemberSection, Rewrite, ServerSection,
};
pub use members::MembersFile;
pub use per_client::PerClientSection;
pub use reliability::{EjectionSection, RetryBudgetSection};
pub use reloader::{ReloadError, Reloaded, Reloader, RELOAD_READ_LIMIT};
pub use routes::{HeaderMatch, RouteSection, VhostSection};
pub use run::{BindError, Gateway};
pub use typed::{DnsTarget, ProbeMethod, Route, Scheme, StatusRange, StickyNames};

#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod reload_sources_tests;
#[cfg(test)]
mod reload_tests;
#[cfg(test)]
mod routes_tests;
#[cfg(test)]
mod tests;
