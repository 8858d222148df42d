//! Prometheus metrics: what each member did and how the front is doing, in the OpenMetrics
//! text format, read from the registry's counters at scrape time (nothing is recorded for
//! metrics on the request path beyond the registry's own atomic counters).
//!
//! Why these: they are what HAProxy's exporter and Envoy's stats give an operator to see a
//! member failing before clients do — requests, failures by kind, in flight, response times,
//! health and admin state, ejections, retries, bytes — and the front's connections and TLS
//! handshakes.
//!
//! ```
//! use tower::ServiceExt;
//! use tower_balancer::registry::{MemberId, MemberSpec, Registry};
//! use tower_balancer_proxy::metrics::Metrics;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new();
//! registry.insert(MemberSpec::new(MemberId::new("node1")?, "http://10.0.0.1:9763".parse()?))?;
//! let res = Metrics::new(registry).oneshot(http::Request::new(())).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```

mod members;
mod panic;
mod queue;

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tower_balancer::failover::FailoverConfig;
use tower_balancer::registry::{Member, Registry};
use tower_service::Service;

use crate::serve::ServerStats;

/// The content type of the OpenMetrics text format, which Prometheus scrapes.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of one balancer, as a tower service answering every request with the current
/// values (mount it at `/metrics`; the balancer-manager serves it there).
#[derive(Debug, Clone)]
pub struct Metrics {
    source: Source,
}

#[derive(Debug, Clone)]
struct Source {
    /// The balancers, named (the name is the `balancer` label; none for an unnamed one).
    lanes: std::sync::Arc<arc_swap::ArcSwap<Vec<(String, Registry)>>>,
    server: Option<ServerStats>,
    /// Each balancer's failover settings (their retry budgets), by name.
    failover: std::sync::Arc<arc_swap::ArcSwap<Vec<(String, FailoverConfig)>>>,
    access_log: Option<crate::access_log::DroppedLines>,
    reloads: Option<ReloadStats>,
}

/// Configuration reloads and their results, for metrics: shared by clones.
#[derive(Debug, Clone, Default)]
pub struct ReloadStats(std::sync::Arc<ReloadCounters>);

#[derive(Debug, Default)]
struct ReloadCounters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    /// Whether the last reload was applied (true before any).
    last_failed: AtomicBool,
    /// When the configuration in force was loaded, in seconds since the Unix epoch.
    loaded_at: AtomicU64,
}

impl ReloadStats {
    /// Counters for a configuration loaded now.
    #[must_use]
    pub fn new() -> Self {
        let stats = Self::default();
        stats.0.loaded_at.store(unix_now(), Ordering::Relaxed);
        stats
    }

    /// Counts a reload: applied (`true`) or refused.
    pub fn record(&self, applied: bool) {
        let c = &self.0;
        if applied {
            c.succeeded.fetch_add(1, Ordering::Relaxed);
            c.loaded_at.store(unix_now(), Ordering::Relaxed);
        } else {
            c.failed.fetch_add(1, Ordering::Relaxed);
        }
        c.last_failed.store(!applied, Ordering::Relaxed);
    }

    /// Reloads applied so far.
    #[must_use]
    pub fn succeeded(&self) -> u64 {
        self.0.succeeded.load(Ordering::Relaxed)
    }

    /// Reloads refused so far (the configuration in force stayed).
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.0.failed.load(Ordering::Relaxed)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Metrics {
    /// The members' metrics from `registry`.
    #[must_use]
    pub fn new(registry: Registry) -> Self {
        Self::balancers(vec![(String::new(), registry)])
    }

    /// The members' metrics of several balancers, each member labelled with its balancer's
    /// name.
    #[must_use]
    pub fn balancers(lanes: Vec<(String, Registry)>) -> Self {
        Self {
            source: Source {
                lanes: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(lanes)),
                server: None,
                failover: std::sync::Arc::default(),
                access_log: None,
                reloads: None,
            },
        }
    }

    /// Also the front's connections and TLS handshakes ([`Server::stats`](crate::serve::Server::stats)).
    #[must_use]
    pub fn server(mut self, stats: ServerStats) -> Self {
        self.source.server = Some(stats);
        self
    }

    /// Also the retries the budget of `config` (the failover layer's) refused.
    #[must_use]
    pub fn failover(self, config: &FailoverConfig) -> Self {
        self.failover_of("", config)
    }

    /// Also the retries the budget of balancer `name`'s `config` refused.
    #[must_use]
    pub fn failover_of(self, name: &str, config: &FailoverConfig) -> Self {
        let mut list = (**self.source.failover.load()).clone();
        list.push((name.to_owned(), config.clone()));
        self.source.failover.store(std::sync::Arc::new(list));
        self
    }

    /// Also the access log's dropped lines.
    #[must_use]
    pub fn access_log(mut self, dropped: crate::access_log::DroppedLines) -> Self {
        self.source.access_log = Some(dropped);
        self
    }

    /// Also the configuration reloads and their results.
    #[must_use]
    pub fn reloads(mut self, stats: ReloadStats) -> Self {
        self.source.reloads = Some(stats);
        self
    }

    /// Replaces the balancers reported and their failover settings, on every clone (a
    /// reload that adds or removes one).
    pub fn set_balancers(
        &self,
        lanes: Vec<(String, Registry)>,
        failover: Vec<(String, FailoverConfig)>,
    ) {
        self.source.lanes.store(std::sync::Arc::new(lanes));
        self.source.failover.store(std::sync::Arc::new(failover));
    }

    /// The current values in the OpenMetrics text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self.source.clone()));
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl<B> Service<Request<B>> for Metrics {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let mut res = Response::new(Full::new(Bytes::from(self.render())));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        ready(Ok(res))
    }
}

/// One balancer's members at a scrape, with its name.
pub(crate) struct Lane {
    name: String,
    members: Vec<std::sync::Arc<Member>>,
}

/// A member's labels: its balancer (when named) and its id, then `extra`.
pub(crate) fn labels<'a>(
    lane: &'a Lane,
    id: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::with_capacity(2 + extra.len());
    if !lane.name.is_empty() {
        out.push(("balancer", lane.name.as_str()));
    }
    out.push(("member", id));
    out.extend_from_slice(extra);
    out
}

/// One family: a descriptor, then a value per member of every balancer.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    lanes: &[Lane],
    mut each: impl FnMut(&mut MetricEncoder<'_>, &Lane, &Member) -> fmt::Result,
) -> fmt::Result {
    let mut e = encoder.encode_descriptor(name, help, None, kind)?;
    for lane in lanes {
        for m in &lane.members {
            each(&mut e, lane, m)?;
        }
    }
    Ok(())
}

fn counter(e: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: u64) -> fmt::Result {
    ConstCounter::new(v).encode(e.encode_family(&labels)?)
}

fn gauge(e: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: i64) -> fmt::Result {
    ConstGauge::new(v).encode(e.encode_family(&labels)?)
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Source {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let registries = self.lanes.load();
        let lanes: Vec<Lane> = registries
            .iter()
            .map(|(name, r)| Lane {
                name: name.clone(),
                members: r.load().members().to_vec(),
            })
            .collect();
        members::member_traffic(&mut encoder, &lanes)?;
        members::member_state(&mut encoder, &lanes)?;
        members::member_counts(&mut encoder, &lanes)?;
        let queues: Vec<(&str, &tower_balancer::registry::WaitQueue)> = registries
            .iter()
            .map(|(n, r)| (n.as_str(), r.load_stats().queue()))
            .collect();
        queue::encode(&mut encoder, &lanes, &queues)?;
        panic::encode(&mut encoder, &registries)?;
        self.process(&mut encoder)
    }
}

fn id(m: &Member) -> String {
    m.id().as_str().to_owned()
}

impl Source {
    /// The retry budget, the access log and the front, where known.
    fn process(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let failover = self.failover.load();
        if !failover.is_empty() {
            let mut e = encoder.encode_descriptor(
                "lb_retry_budget_refusals",
                "Retries the retry budget refused.",
                None,
                MetricType::Counter,
            )?;
            for (name, f) in failover.iter() {
                ConstCounter::new(f.budget_refusals())
                    .encode(e.encode_family(&[("balancer", name.as_str())])?)?;
            }
        }
        if let Some(d) = &self.access_log {
            let mut e = encoder.encode_descriptor(
                "lb_access_log_dropped",
                "Access log lines dropped because the writer could not keep up or write them.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(d.get()).encode(e.encode_family(&[("log", "access")])?)?;
        }
        if let Some(s) = &self.server {
            clients(encoder, s)?;
        }
        if let Some(r) = &self.reloads {
            reloads(encoder, r)?;
        }
        shortages(encoder)
    }
}

/// The process's runs out of file descriptors, by what met them (the process's, whatever
/// balancer or worker).
fn shortages(encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let mut e = encoder.encode_descriptor(
        "lb_out_of_descriptors",
        "Times the process found itself out of file descriptors, by what met it: accept (a client connection waited; an idle member connection past a second was closed for it when there was one), member_connect (an idle member connection was closed to make room, else the request got 503), probe (a health probe not made, counted neither for nor against its member: while these grow, members' health goes unchecked), reload (a reload's file, or one it names, not opened: tried again each second, ten times at most).",
        None,
        MetricType::Counter,
    )?;
    for (at, n) in tower_balancer::descriptors::shortages() {
        ConstCounter::new(n).encode(e.encode_family(&[("at", at.name())])?)?;
    }
    Ok(())
}

/// The server's counts of its clients: connections, TLS handshakes, answers by status class,
/// what limits refused.
fn clients(encoder: &mut DescriptorEncoder<'_>, s: &ServerStats) -> fmt::Result {
    let plain: [(&str, &str); 0] = [];
    let mut e = encoder.encode_descriptor(
        "lb_client_connections",
        "Client connections accepted.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(s.accepted()).encode(e.encode_family(&plain)?)?;
    let mut e = encoder.encode_descriptor(
        "lb_client_connections_open",
        "Client connections open now.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(signed(s.open())).encode(e.encode_family(&plain)?)?;
    let mut e = encoder.encode_descriptor(
            "lb_tls_handshakes",
            "TLS handshakes with clients, by result (plain_http: a plain HTTP request sent to the TLS port, answered 400).",
            None,
            MetricType::Counter,
        )?;
    ConstCounter::new(s.tls_handshakes()).encode(e.encode_family(&[("result", "ok")])?)?;
    ConstCounter::new(s.tls_handshake_failures())
        .encode(e.encode_family(&[("result", "failed")])?)?;
    ConstCounter::new(s.plain_http_on_tls())
        .encode(e.encode_family(&[("result", "plain_http")])?)?;
    let mut e = encoder.encode_descriptor(
            "lb_client_limited",
            "What per-client limits refused: requests over the rate (429), connections over the cap (closed at accept) and HTTP/2 streams past the client's share of it (429).",
            None,
            MetricType::Counter,
        )?;
    ConstCounter::new(s.rate_limited()).encode(e.encode_family(&[("limit", "rate")])?)?;
    ConstCounter::new(s.refused_per_client())
        .encode(e.encode_family(&[("limit", "connections")])?)?;
    let mut e = encoder.encode_descriptor(
            "lb_client_responses",
            "Answers the balancer's stack sent clients, by status class, one a request whatever its attempts: the members' own and the balancer's (502, 503, 504 when members fail); the access log's lines but its 499s. Not counted: requests refused before the stack (lb_client_requests_refused) and requests whose client went away first.",
            None,
            MetricType::Counter,
        )?;
    for (class, n) in s.answers() {
        ConstCounter::new(n).encode(e.encode_family(&[("code", class)])?)?;
    }
    tunnels(encoder, s)?;
    let mut e = encoder.encode_descriptor(
            "lb_client_requests_refused",
            "Requests refused before the balancer's stack saw them (no access-log line), by reason: malformed (400: a head the HTTP/1 parser refuses, a Transfer-Encoding it cannot frame among them), too_large (431 or 414), timeout (a head not complete in time, 408), framing (a parsed request whose Host, Transfer-Encoding, scheme or method is refused, such as a bad or repeated Host, chunked twice or CONNECT, 400), capacity (an HTTP/2 WebSocket with no place for its member connection under the connection cap, 503; also an HTTP/2 stream that needed a member connection of its own and found no place, whose 503 has an access-log line), uploads (an HTTP/2 request with a body to come past its connection's server.http2_max_uploads, reset REFUSED_STREAM so that its client may send it again).",
            None,
            MetricType::Counter,
        )?;
    for (reason, n) in s.refused_requests() {
        ConstCounter::new(n).encode(e.encode_family(&[("reason", reason)])?)?;
    }
    let mut e = encoder.encode_descriptor(
            "lb_client_connections_closed",
            "Client connections a limit closed (over HTTP/2, sent a GOAWAY first), by reason: flood (frames that carried nothing), resets (requests abandoned as a pace), window (an answer starved of flow-control window past the send timeout), send_timeout (writes the client did not read), enhance_your_calm (HTTP/2's own limits: GOAWAY ENHANCE_YOUR_CALM).",
            None,
            MetricType::Counter,
        )?;
    for (reason, n) in s.closed_connections() {
        ConstCounter::new(n).encode(e.encode_family(&[("reason", reason)])?)?;
    }
    Ok(())
}

/// The WebSocket tunnels: opened, open now, and the bytes they passed each way (a tunnel's
/// traffic is no request's: neither the access log nor the members' byte counts have it).
fn tunnels(encoder: &mut DescriptorEncoder<'_>, s: &ServerStats) -> fmt::Result {
    let plain: [(&str, &str); 0] = [];
    let mut e = encoder.encode_descriptor(
        "lb_client_tunnels",
        "WebSocket tunnels opened (HTTP/1.1 upgrades and HTTP/2 extended CONNECTs).",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(s.tunnels()).encode(e.encode_family(&plain)?)?;
    let mut e = encoder.encode_descriptor(
        "lb_client_tunnels_open",
        "WebSocket tunnels open now.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(signed(s.tunnels_open())).encode(e.encode_family(&plain)?)?;
    let mut e = encoder.encode_descriptor(
        "lb_client_tunnel_bytes",
        "Bytes WebSocket tunnels passed, by direction: to_member (from clients) and to_client (from members).",
        None,
        MetricType::Counter,
    )?;
    let bytes = s.tunnel_bytes();
    ConstCounter::new(bytes.to_members())
        .encode(e.encode_family(&[("direction", "to_member")])?)?;
    ConstCounter::new(bytes.to_clients()).encode(e.encode_family(&[("direction", "to_client")])?)
}

/// The configuration's reloads, named as Prometheus names its own.
fn reloads(encoder: &mut DescriptorEncoder<'_>, r: &ReloadStats) -> fmt::Result {
    let plain: [(&str, &str); 0] = [];
    let mut e = encoder.encode_descriptor(
        "lb_config_reloads",
        "Configuration reloads, by result (a refused file leaves the configuration in force).",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(r.succeeded()).encode(e.encode_family(&[("result", "success")])?)?;
    ConstCounter::new(r.failed()).encode(e.encode_family(&[("result", "failure")])?)?;
    let mut e = encoder.encode_descriptor(
        "lb_config_last_reload_successful",
        "Whether the last reload was applied (1 before any).",
        None,
        MetricType::Gauge,
    )?;
    let ok = !r.0.last_failed.load(Ordering::Relaxed);
    ConstGauge::new(i64::from(ok)).encode(e.encode_family(&plain)?)?;
    let mut e = encoder.encode_descriptor(
        "lb_config_last_reload_success_timestamp_seconds",
        "When the configuration in force was loaded, in seconds since the Unix epoch.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(signed(r.0.loaded_at.load(Ordering::Relaxed))).encode(e.encode_family(&plain)?)
}
