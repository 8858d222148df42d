//! The file's shape: what `toml` reads, checked value by value while it is read so that a
//! bad value is reported with its line and key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, StatusCode, Uri};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::Spanned;
use tower_balancer::registry::{AdminState, Health};

use super::reliability::{EjectionSection, RetryBudgetSection};
use super::typed::{DnsTarget, ProbeMethod, Route, Scheme, StatusRange, StickyNames};
use super::values::{
    balancer_name, duration_opt, fraction_opt, h2_count_opt, header_bytes_opt, header_name_opt,
    host_name, host_names, max_retries, non_empty_opt, pass_headers, path, port_opt, positive_opt,
    positive_u32, probe_interval, socket_addr, socket_addrs, statuses, timeout, timeout_opt,
    trusted_proxies, upgrades_opt, uri, uri_opt, weight,
};
use crate::hygiene::{PassOnly, TrustedProxies};

/// The whole file: an Apache virtual host with its balancers.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "super::balancers::RawFile")]
pub struct FileConfig {
    /// `<VirtualHost>`: where and how clients are accepted.
    pub server: ServerSection,
    /// `<Proxy balancer://name>` and its members: the first balancer (`[balancer]`'s only).
    pub balancer: BalancerSection,
    /// The balancers after the first, from `[[balancer]]` tables.
    pub more_balancers: Vec<BalancerSection>,
    /// `<Location /balancer-manager>`: off unless present.
    pub manager: Option<ManagerSection>,
    /// `<VirtualHost>`s sharing the listener (names, certificate, routes); none: one balancer.
    pub vhosts: Vec<super::routes::VhostSection>,
    /// Whether the balancers were written `[[balancer]]` (their keys are `balancer[i].…`).
    pub(crate) balancer_array: bool,
}

impl FileConfig {
    /// Every balancer, the first first.
    pub fn balancers(&self) -> impl Iterator<Item = &BalancerSection> {
        std::iter::once(&self.balancer).chain(&self.more_balancers)
    }

    /// The key of balancer `lane`'s `rest` (`balancer.…` or `balancer[i].…`).
    pub(crate) fn balancer_key(&self, lane: usize, rest: &str) -> String {
        let head = if self.balancer_array {
            format!("balancer[{lane}]")
        } else {
            "balancer".to_owned()
        };
        if rest.is_empty() {
            head
        } else {
            format!("{head}.{rest}")
        }
    }
}

/// The virtual host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `Listen` / `<VirtualHost addr:port>`.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// `ServerName`: the public host name, optionally with a port (used for
    /// `ProxyPassReverse`).
    #[serde(deserialize_with = "host_name")]
    pub server_name: String,
    /// `SSLCertificateFile` (PEM chain). With `key`, the front speaks TLS; without, plain HTTP.
    #[serde(default)]
    pub certificate: Option<Spanned<PathBuf>>,
    /// `SSLCertificateKeyFile` (PEM).
    #[serde(default)]
    pub key: Option<Spanned<PathBuf>>,
    /// `RequestReadTimeout header=`: how long a client may take to send its headers.
    #[serde(default, deserialize_with = "timeout_opt")]
    pub header_read_timeout: Option<Duration>,
    /// `LimitRequestFieldSize` × fields, in bytes (at least 8192, hyper's floor).
    #[serde(default, deserialize_with = "header_bytes_opt")]
    pub max_header_bytes: Option<usize>,
    /// `LimitRequestFields` (at least 1).
    #[serde(default, deserialize_with = "positive_opt")]
    pub max_headers: Option<usize>,
    /// `GracefulShutdownTimeout`.
    #[serde(default, deserialize_with = "duration_opt")]
    pub graceful_timeout: Option<Duration>,
    /// nginx `send_timeout`: how long a response may wait for the client to read any of it
    /// (over HTTP/2, to give it flow-control window) before the connection is closed
    /// (default 60 s).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub send_timeout: Option<Duration>,
    /// `RequestReadTimeout body=` (nginx `client_body_timeout`): how long a request body may
    /// send nothing before the request is aborted with 408 (default 60 s).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub request_body_timeout: Option<Duration>,
    /// Apache `CustomLog`: `"stdout"` or a file (relative to this file's directory), one line
    /// a request, written off the request path; off when absent.
    #[serde(default)]
    pub access_log: Option<Spanned<PathBuf>>,
    /// `"combined"` (Apache's, the default) or `"json"`.
    #[serde(default)]
    pub access_log_format: crate::access_log::LogFormat,
    /// nginx `worker_processes`: runtimes serving the front, each on its own thread with its
    /// own `SO_REUSEPORT` listener (at least 1; the library's default is 1, the
    /// `tower-balancer` binary's the number of cores).
    #[serde(default, deserialize_with = "positive_opt")]
    pub workers: Option<usize>,
    /// HAProxy `maxconn`: the most client connections at once (default: half the open-file
    /// limit after a reserve of 64; at least 1).
    #[serde(default, deserialize_with = "positive_opt")]
    pub max_connections: Option<usize>,
    /// The most requests on one HTTP/2 connection that stream their bodies to members at
    /// once (default 16), each holding a member connection while its client sends. The
    /// body of one past it is read whole first (4 MiB a connection), or the stream is refused
    /// unprocessed (`REFUSED_STREAM`) for its client to send again.
    #[serde(default, deserialize_with = "h2_count_opt")]
    pub http2_max_uploads: Option<u32>,
    /// The most streams open at once on one HTTP/2 connection (default 100, as HAProxy's).
    #[serde(default, deserialize_with = "h2_count_opt")]
    pub http2_max_streams: Option<u32>,
    /// Limits per client: request rate and open connections.
    #[serde(default)]
    pub per_client: Option<super::per_client::PerClientSection>,
}

/// The balancer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerSection {
    /// `balancer://name`: letters, digits and `._~-`, as in a URL's host.
    #[serde(deserialize_with = "balancer_name")]
    pub name: String,
    /// `lbmethod=`.
    #[serde(default)]
    pub lbmethod: LbMethod,
    /// `stickysession=JSESSIONID|jsessionid`: the cookie, then after `|` the URL parameter,
    /// whose value ends in `.route` (one name serves for both, as in Apache). `""` turns
    /// session-id routing off.
    #[serde(default)]
    pub stickysession: StickyNames,
    /// The balancer's own route cookie (the `ROUTEID` recipe).
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// Writes the cookie as Apache does (`.node1` in clear) instead of an HMAC token.
    #[serde(default)]
    pub cookie_plain: bool,
    /// A file of at least 32 bytes whose content keys the route tokens, so that every
    /// instance accepts every other's cookies; a random per-process key when absent.
    #[serde(default)]
    pub cookie_key_file: Option<Spanned<PathBuf>>,
    /// Several key files, the first signing new cookies and every one accepted: rotate a
    /// key by putting the new file first and keeping the old one until its cookies expire.
    /// Give every balancer instance the same list.
    #[serde(default, deserialize_with = "super::values::key_files")]
    pub cookie_key_files: Vec<Spanned<PathBuf>>,
    /// The request header `maglev` and `ringhash` hash (e.g. `x-user`).
    #[serde(default, deserialize_with = "header_name_opt")]
    pub hash_key: Option<HeaderName>,
    /// A members file, watched for changes ([`MembersFile`](super::MembersFile)); its
    /// members join the inline ones.
    #[serde(default)]
    pub members_file: Option<Spanned<PathBuf>>,
    /// How often the members file is checked for changes (default 1 s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub members_poll: Option<Duration>,
    /// How long a member that left the members file, DNS or etcd drains before it is removed
    /// (default 30 s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub drain: Option<Duration>,
    /// Members from DNS.
    #[serde(default)]
    pub dns: Option<DnsSection>,
    /// Members from an etcd key prefix.
    #[serde(default)]
    pub etcd: Option<super::etcd::EtcdSection>,
    /// `nofailover=On`: a session whose member is down gets 503, not another member.
    #[serde(default)]
    pub nofailover: bool,
    /// `maxattempts=`: retries after the first attempt (at most 15).
    #[serde(default, deserialize_with = "max_retries")]
    pub maxattempts: Option<usize>,
    /// `timeout=` (nginx `proxy_read_timeout`): how long one attempt may wait for the
    /// member's response headers (default 60 s).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub timeout: Option<Duration>,
    /// nginx `proxy_read_timeout` on bodies: how long a member's body may send nothing (60 s).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub response_body_timeout: Option<Duration>,
    /// nginx `proxy_send_timeout`: how long a member may take nothing written to it (60 s).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub send_timeout: Option<Duration>,
    /// How long a WebSocket tunnel may carry nothing either way before it is closed
    /// (default 5 minutes, as Envoy's stream idle timeout; nginx's `proxy_read_timeout`).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub tunnel_idle_timeout: Option<Duration>,
    /// Protocols an `Upgrade` may switch to (default `["websocket"]`; `h2c` is refused).
    #[serde(default, deserialize_with = "upgrades_opt")]
    pub upgrades: Option<Vec<String>>,
    /// Envoy's panic threshold: below this fraction of healthy members, health is ignored
    /// and every member is tried (default 0.5); 0 turns panic mode off, so that with every
    /// member down clients get 503 at once.
    #[serde(default, deserialize_with = "fraction_opt")]
    pub panic_threshold: Option<f64>,
    /// Whether signed cookies also accept Apache's clear `.route` form (default true, a
    /// migration aid while Apache-issued cookies are still out there).
    #[serde(default = "yes")]
    pub cookie_accept_apache: bool,
    /// The retry budget for requests that may have been processed.
    #[serde(default)]
    pub retry_budget: Option<RetryBudgetSection>,
    /// HAProxy `slowstart`, Envoy's slow start: a member that joins or comes back reaches its
    /// full weight over this time instead of at once (off when absent).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub slow_start: Option<Duration>,
    /// Passive ejection of members that real requests see failing (on by default).
    #[serde(default)]
    pub ejection: Option<EjectionSection>,
    /// `connectiontimeout=` (default 5 s).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub connection_timeout: Option<Duration>,
    /// `failonstatus=`: statuses that count as a failure and are retried elsewhere.
    #[serde(default, deserialize_with = "statuses")]
    pub failonstatus: Vec<StatusCode>,
    /// `ProxyPreserveHost`.
    #[serde(default)]
    pub preserve_host: bool,
    /// `ProxyPassReverse`: rewrite members' URLs in `Location`-like headers to the public URL.
    #[serde(default = "yes")]
    pub proxy_pass_reverse: bool,
    /// The public URL responses are rewritten to; `https://server_name[:port]` when absent.
    #[serde(default, deserialize_with = "uri_opt")]
    pub public_url: Option<Uri>,
    /// `ProxyPassReverseCookieDomain member public`.
    #[serde(default)]
    pub reverse_cookie_domain: Vec<Rewrite>,
    /// `ProxyPassReverseCookiePath member public`.
    #[serde(default)]
    pub reverse_cookie_path: Vec<Rewrite>,
    /// `SSLProxyCACertificateFile`: PEM files of the roots members' certificates chain to.
    #[serde(default)]
    pub trust_roots: Vec<Spanned<PathBuf>>,
    /// `SSLProxyMachineCertificateFile`: a client certificate chain for members that ask.
    #[serde(default)]
    pub client_certificate: Option<Spanned<PathBuf>>,
    /// Its key.
    #[serde(default)]
    pub client_key: Option<Spanned<PathBuf>>,
    /// `RemoteIPTrustedProxy`: addresses and CIDRs whose `X-Forwarded-For` is kept.
    #[serde(default, deserialize_with = "trusted_proxies")]
    pub trusted_proxies: TrustedProxies,
    /// nginx `proxy_pass_request_headers off` with the headers named set again: the only
    /// request headers a client that is not a trusted proxy may send the members, beside
    /// those every request keeps (framing, body type and encoding, a WebSocket's handshake,
    /// `TE`, `X-Request-Id`); every header but the forwarding ones passes when absent.
    #[serde(default, deserialize_with = "pass_headers")]
    pub pass_headers: Option<PassOnly>,
    /// `acquire=` (HAProxy `timeout queue`): how long a request waits for a member with
    /// room when every member is at its `max` (default 10 s).
    #[serde(default, deserialize_with = "timeout_opt")]
    pub queue_timeout: Option<Duration>,
    /// HAProxy `maxqueue`: how many requests may wait at once (default 1024; 0 refuses at
    /// once).
    #[serde(default)]
    pub queue_length: Option<u32>,
    /// `mod_proxy_hcheck` settings; probes are off when absent.
    #[serde(default)]
    pub health: Option<HealthSection>,
    /// `BalancerMember` lines.
    #[serde(rename = "member", default)]
    pub members: Vec<MemberSection>,
}

/// `[balancer.dns]`: members from DNS (no Apache equivalent; nginx `resolve`, HAProxy
/// `server-template`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// A name whose A and AAAA records are the members (with `port`).
    #[serde(default)]
    pub name: Option<String>,
    /// The members' port, with `name` (1–65535).
    #[serde(default, deserialize_with = "port_opt")]
    pub port: Option<u16>,
    /// An SRV name whose records are the members (instead of `name` and `port`).
    #[serde(default)]
    pub srv: Option<String>,
    /// `http` (default) or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Put in front of every discovered member's id.
    #[serde(default)]
    pub id_prefix: String,
    /// Servers to ask instead of the system's (`/etc/resolv.conf`); SRV targets are
    /// resolved by them too, and their members addressed by IP.
    #[serde(default, deserialize_with = "socket_addrs")]
    pub name_servers: Vec<SocketAddr>,
    /// The shortest time between two resolutions (default 1 s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub ttl_floor: Option<Duration>,
    /// The longest time between two resolutions (default 60 s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub ttl_ceiling: Option<Duration>,
    /// How long a member must be missing from answers before it drains (default 10 s).
    #[serde(default, deserialize_with = "duration_opt")]
    pub remove_after: Option<Duration>,
    /// The most members an answer may name (default 256).
    #[serde(default)]
    pub max_members: Option<usize>,
}

impl DnsSection {
    /// What to resolve: `name` and `port`, or `srv`.
    ///
    /// # Errors
    /// The message for any other mix of the three keys.
    pub fn target(&self) -> Result<DnsTarget, &'static str> {
        DnsTarget::from_keys(self.name.as_ref(), self.port, self.srv.as_ref())
    }
}

/// A `from → to` pair for cookie rewriting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// What members write.
    pub from: String,
    /// What clients see.
    pub to: String,
}

/// `lbmethod=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbMethod {
    /// Smooth weighted round robin (Apache `byrequests`).
    #[default]
    Byrequests,
    /// Least outstanding requests (Apache `bybusyness`).
    Bybusyness,
    /// Least bytes transferred, weighted (Apache `bytraffic`).
    Bytraffic,
    /// Power of two choices over peak EWMA latency.
    P2c,
    /// Weighted random.
    Random,
    /// Maglev consistent hashing of `hash_key`.
    Maglev,
    /// Ring consistent hashing of `hash_key`.
    Ringhash,
}

impl LbMethod {
    /// The name the file gives it (`byrequests`, `maglev`, …).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Byrequests => "byrequests",
            Self::Bybusyness => "bybusyness",
            Self::Bytraffic => "bytraffic",
            Self::P2c => "p2c",
            Self::Random => "random",
            Self::Maglev => "maglev",
            Self::Ringhash => "ringhash",
        }
    }
}

/// One `BalancerMember`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    /// The member's URL (`https://abc.com:9443`).
    #[serde(deserialize_with = "uri")]
    pub url: Uri,
    /// `route=`: the member's id, and the suffix its session ids carry.
    pub route: Spanned<Route>,
    /// `loadfactor=` (1–100 in Apache; 1–65535 here).
    #[serde(default = "one", deserialize_with = "weight")]
    pub loadfactor: u32,
    /// `lbset=`: lower sets are used first.
    #[serde(default)]
    pub lbset: u16,
    /// `status=`: `+D` disabled, `+H` hot standby, `+N` draining, or the words `active`,
    /// `disabled`, `standby`, `draining`.
    #[serde(default, deserialize_with = "status")]
    pub status: AdminState,
    /// Addresses the member's host name resolves to inside this process (an `/etc/hosts`
    /// line); the system resolver when absent.
    #[serde(default, deserialize_with = "socket_addrs")]
    pub resolve: Vec<SocketAddr>,
    /// `max=`: the most requests in flight on this member at once; more wait in the
    /// balancer's queue (0, the default: no limit).
    #[serde(default)]
    pub max: u32,
}

/// Active health checks (`mod_proxy_hcheck`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// `hcmethod=`: `GET`, `HEAD`, `OPTIONS`, or `TCP` for a connect-only check.
    #[serde(default)]
    pub method: ProbeMethod,
    /// `hcuri=`: a path (and query) on the member, starting with `/`.
    #[serde(default = "default_hc_uri", deserialize_with = "path")]
    pub uri: String,
    /// `hcinterval=`.
    #[serde(default = "default_hc_interval", deserialize_with = "probe_interval")]
    pub interval: Duration,
    /// How long one probe may take.
    #[serde(default = "default_hc_timeout", deserialize_with = "timeout")]
    pub timeout: Duration,
    /// `hcpasses=`: passes in a row that bring a member back (at least 1).
    #[serde(default = "two", deserialize_with = "positive_u32")]
    pub passes: u32,
    /// `hcfails=`: failures in a row that take a member out (at least 1).
    #[serde(default = "two", deserialize_with = "positive_u32")]
    pub fails: u32,
    /// `hcexpr` as a status range: `"200-399"` (the default) or one status; HTTP checks only.
    #[serde(default)]
    pub expect: Option<StatusRange>,
    /// `hcexpr` on the body: text the page must contain.
    #[serde(default, deserialize_with = "non_empty_opt")]
    pub body_contains: Option<String>,
    /// `"down"` (the default): a member takes traffic once it passes its first check, sent
    /// at start (one that fails it needs `passes` checks); `"up"`: members start healthy and
    /// checks only take them out.
    #[serde(default = "start_down", deserialize_with = "initial")]
    pub initial: Health,
}

const fn start_down() -> Health {
    Health::Unhealthy
}

fn initial<'de, D: Deserializer<'de>>(d: D) -> Result<Health, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "down" => Ok(Health::Unhealthy),
        "up" => Ok(Health::Healthy),
        _ => Err(de::Error::custom(format!(
            "`{s}` is not \"up\" or \"down\""
        ))),
    }
}

/// `<Location /balancer-manager>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerSection {
    /// Where the manager listens; keep it on loopback or behind authentication.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Host names the manager answers for besides `localhost`, `127.0.0.1`, `::1` and the
    /// address it listens on (421 for any other `Host`: DNS rebinding).
    #[serde(default, deserialize_with = "host_names")]
    pub names: Vec<String>,
}

fn default_cookie() -> String {
    "ROUTEID".into()
}
const fn yes() -> bool {
    true
}
const fn one() -> u32 {
    1
}
const fn two() -> u32 {
    2
}
fn default_hc_uri() -> String {
    "/".into()
}
const fn default_hc_interval() -> Duration {
    Duration::from_secs(5)
}
const fn default_hc_timeout() -> Duration {
    Duration::from_secs(2)
}

fn status<'de, D: Deserializer<'de>>(d: D) -> Result<AdminState, D::Error> {
    let s = String::deserialize(d)?;
    parse_status(&s).ok_or_else(|| {
        de::Error::custom(format!(
            "`{s}` is not a member status: use +D, +H, +N or active, disabled, standby, draining"
        ))
    })
}

/// Apache's status flags or our words.
pub(crate) fn parse_status(s: &str) -> Option<AdminState> {
    AdminState::parse(s)
}
