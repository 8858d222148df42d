//! Forwarding settings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use http_body_util::Empty;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_balancer::registry::Registry;

use super::client::MemberClient;
use super::names::MemberNames;
use super::resolve::Resolver;
use super::service::{Connector, Forward, ForwardSettings};
use super::tls::UpstreamTls;
use crate::hygiene::Forwarding;
use crate::rewrite::ReverseRewrite;
use crate::tls::TlsError;

/// The largest response head a member may send over HTTP/1.1 (64 KiB); a larger one is a
/// 502.
pub const MAX_MEMBER_HEAD_BYTES: usize = 64 * 1024;

/// How the forwarder reaches members.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    connect_timeout: Duration,
    send_timeout: Duration,
    idle_timeout: Duration,
    tls: Option<UpstreamTls>,
    overrides: HashMap<String, Vec<SocketAddr>>,
    preserve_host: bool,
    forwarding: Forwarding,
    rewrite: Option<ReverseRewrite>,
    upgrades: Vec<String>,
    tunnel_idle: Duration,
}

/// How long a WebSocket tunnel may carry nothing either way before it is closed (Envoy's
/// stream idle timeout for upgrades).
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for ForwardConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ForwardConfig {
    /// 5 s connect timeout; pooled connections idle at most 4 s (shorter than the usual
    /// 5 s member keep-alive, so a connection the member is closing is not reused); HTTP only
    /// until [`tls`](Self::tls) is set; the member's host in `Host` (Apache's default);
    /// `X-Forwarded-*` trusting nobody; no reverse rewriting; only WebSocket upgrades, whose
    /// tunnels close after 5 minutes with nothing sent either way; a member that takes
    /// nothing of a request body for 60 s has its connection closed.
    #[must_use]
    pub fn new() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            send_timeout: super::DEFAULT_MEMBER_SEND_TIMEOUT,
            idle_timeout: Duration::from_secs(4),
            tls: None,
            overrides: HashMap::new(),
            preserve_host: false,
            forwarding: Forwarding::new(),
            rewrite: None,
            upgrades: vec!["websocket".to_owned()],
            tunnel_idle: DEFAULT_TUNNEL_IDLE_TIMEOUT,
        }
    }

    /// How long a tunnel (a WebSocket after its switch) may carry nothing either way before
    /// both its connections are closed (default [`DEFAULT_TUNNEL_IDLE_TIMEOUT`], 5 minutes,
    /// as Envoy's stream idle timeout; nginx's `proxy_read_timeout` is 60 s). A tunnel also
    /// closes, both ways, when either side ends its half (as nginx's), so neither a client
    /// that left nor a member that went silent holds it open.
    #[must_use]
    pub const fn tunnel_idle_timeout(mut self, timeout: Duration) -> Self {
        self.tunnel_idle = timeout;
        self
    }

    /// The protocols an HTTP/1.1 `Upgrade` may switch to (default: `websocket` only; the
    /// names compare without case, a `/version` suffix is ignored). A request asking for
    /// anything else, or for several protocols one of which is not listed, is forwarded as a
    /// plain request without `Upgrade`. `h2c` is never forwarded, listed or not, and neither
    /// is `HTTP2-Settings`. An empty list turns upgrades off.
    #[must_use]
    pub fn upgrades<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.upgrades = protocols
            .into_iter()
            .map(Into::into)
            .filter(|p| !p.eq_ignore_ascii_case("h2c"))
            .collect();
        self
    }

    /// The tunnels' idle timeout ([`tunnel_idle_timeout`](Self::tunnel_idle_timeout)).
    #[must_use]
    pub const fn tunnel_idle(&self) -> Duration {
        self.tunnel_idle
    }

    /// How long connecting to a member may take (a connect failure: nothing was sent).
    #[must_use]
    pub const fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a member may take nothing of what is written to it (a request body hyper's
    /// client streams, the close of a connection whose exchange was given up) before its
    /// connection is closed (default
    /// [`DEFAULT_MEMBER_SEND_TIMEOUT`](super::DEFAULT_MEMBER_SEND_TIMEOUT), 60 s, as
    /// nginx's `proxy_send_timeout`), timed between two writes: a member that reads slowly
    /// but steadily is never cut. The attempt fails (504 or 502, and failover decides); without
    /// it, an upload to a member that stopped reading held its connection until the member
    /// came back, whether or not its client was still there.
    #[must_use]
    pub const fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept.
    #[must_use]
    pub const fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Speaks HTTPS to `https://` members with these trust roots (HTTP/2 by ALPN).
    #[must_use]
    pub fn tls(mut self, tls: UpstreamTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Resolves `host` to `addrs` inside this process (the recipe's /etc/hosts step).
    #[must_use]
    pub fn resolve(mut self, host: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.overrides
            .entry(host.to_ascii_lowercase())
            .or_default()
            .extend(addrs);
        self
    }

    /// Sends the client's `Host` to members (Apache `ProxyPreserveHost On`).
    #[must_use]
    pub const fn preserve_host(mut self, on: bool) -> Self {
        self.preserve_host = on;
        self
    }

    /// Which forwarding headers are written and whom they trust.
    #[must_use]
    pub fn forwarding(mut self, forwarding: Forwarding) -> Self {
        self.forwarding = forwarding;
        self
    }

    /// Rewrites member URLs and cookies in responses (Apache `ProxyPassReverse`).
    #[must_use]
    pub fn reverse_rewrite(mut self, rewrite: ReverseRewrite) -> Self {
        self.rewrite = Some(rewrite);
        self
    }

    /// Builds the forwarding service for `registry`'s members, with one connection pool.
    ///
    /// # Errors
    /// [`TlsError`] if the TLS settings are refused.
    pub fn build<B>(self, registry: Registry) -> Result<Forward<B>, TlsError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let client = MemberClient::new(
            self.connector(&registry)?,
            self.connector_speaking(&registry, false)?,
            (self.idle_timeout, self.send_timeout),
        );
        Ok(Forward::new(
            client,
            Arc::new(ForwardSettings {
                registry,
                preserve_host: self.preserve_host,
                forwarding: self.forwarding,
                rewrite: self.rewrite,
                upgrades: self.upgrades.into_boxed_slice(),
                tunnel_idle: self.tunnel_idle,
            }),
        ))
    }

    /// A client that reaches `registry`'s members exactly as the forwarder does (the same
    /// trust roots, client certificate, name overrides, TLS names and connect timeout), for
    /// [`HttpProbe`](tower_balancer::health::HttpProbe): a probe then checks the path real
    /// requests take. It has its own small pool, so probes never hold the forwarder's
    /// connections.
    ///
    /// # Errors
    /// [`TlsError`] if the TLS settings are refused.
    pub fn probe_client(&self, registry: &Registry) -> Result<ProbeClient, TlsError> {
        Ok(Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.idle_timeout)
            .pool_max_idle_per_host(1)
            .pool_timer(TokioTimer::new())
            .build(self.connector(registry)?))
    }

    fn connector(&self, registry: &Registry) -> Result<Connector, TlsError> {
        self.connector_speaking(registry, true)
    }

    /// A connector offering HTTP/2 by ALPN when `h2`, else HTTP/1.1 alone: a request to
    /// switch protocols (a WebSocket) must reach a member that speaks HTTP/2 as HTTP/1.1,
    /// where `Upgrade` means something (over HTTP/2 it became a plain `GET`).
    fn connector_speaking(&self, registry: &Registry, h2: bool) -> Result<Connector, TlsError> {
        let mut http = HttpConnector::new_with_resolver(Resolver::new(self.overrides.clone()));
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.connect_timeout));
        http.set_nodelay(true);
        let tls = match &self.tls {
            Some(t) => t.client_config()?,
            // no trust roots configured: https members fail to connect (nothing is trusted)
            None => UpstreamTls::empty().client_config()?,
        };
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .with_server_name_resolver(MemberNames::new(registry.clone()));
        Ok(if h2 {
            builder.enable_all_versions().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        })
    }
}

/// The client [`ForwardConfig::probe_client`] makes: a `tower` service of
/// `Request<Empty<Bytes>>`.
pub type ProbeClient = Client<HttpsConnector<HttpConnector<Resolver>>, Empty<Bytes>>;
