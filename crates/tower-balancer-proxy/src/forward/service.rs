//! The forwarding service.

use std::sync::Arc;
use std::task::{Context, Poll};

use super::body::MemberBody;
use base64::Engine as _;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use ring::rand::{SecureRandom, SystemRandom};
use tower_balancer::balance::{AttemptTimeout, Picked};
use tower_balancer::client::{ClientAddr, ClientTls};
use tower_balancer::registry::{Member, Registry};
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
use tower_service::Service;

use super::client::MemberClient;
use super::error::NotPicked;
use super::future::{LimitedMember, ResponseFuture, Upgrading};
use super::resolve::Resolver;
use crate::hygiene::{
    is_valid_host, join_cookie_fields, strip_hop_by_hop, strip_hop_by_hop_answer, Forwarding,
};
use crate::rewrite::ReverseRewrite;

/// How long an exchange the client abandoned may hold a limited member's slot when the
/// request carries no attempt timeout: the failover layer's default per-try timeout.
const ABANDONED_HOLD: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) type Connector = HttpsConnector<HttpConnector<Resolver>>;

/// Sends each request to the member the balance layer picked ([`Picked`] in its extensions)
/// over a pooled connection, and brings the response back, with header hygiene both ways
/// and reverse rewriting. Made by [`ForwardConfig::build`](super::ForwardConfig::build).
///
/// Errors are [`UpstreamError`]s: `Connect` when nothing was sent (failover may retry any
/// method), `ClientBody` when the client's own body failed (never the member's fault),
/// `Timeout`, `Protocol` or `Reset` otherwise. Their text is for logs; map them to a
/// status with `tower_balancer::error::error_status` (502 or 504).
pub struct Forward<B> {
    /// Behind an `Arc`: the stack is cloned for every request (an `Arc` is one increment).
    client: Arc<MemberClient<B>>,
    shared: Arc<ForwardSettings>,
}

pub(crate) struct ForwardSettings {
    pub(crate) registry: Registry,
    pub(crate) preserve_host: bool,
    pub(crate) forwarding: Forwarding,
    pub(crate) rewrite: Option<ReverseRewrite>,
    /// Upgrade protocols forwarded (lower case); any other `Upgrade` is dropped.
    pub(crate) upgrades: Box<[String]>,
    /// How long a tunnel may carry nothing before it is closed.
    pub(crate) tunnel_idle: std::time::Duration,
}

/// Gives a request served by axum (`into_make_service_with_connect_info::<SocketAddr>`) the
/// [`ClientAddr`] its `ConnectInfo` holds, unless it has one (with the `axum` feature).
#[cfg(feature = "axum")]
fn adopt_connect_info(ext: &mut http::Extensions) {
    if ext.get::<ClientAddr>().is_none() {
        let addr = ext
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        if let Some(addr) = addr {
            ext.insert(ClientAddr(addr));
        }
    }
}

/// Without the `axum` feature there is no `ConnectInfo` to read.
#[cfg(not(feature = "axum"))]
const fn adopt_connect_info(_: &mut http::Extensions) {}

/// Said once per process: a stack without the client's address cannot vouch for it.
static UNKNOWN_CLIENT: std::sync::Once = std::sync::Once::new();

impl<B> Clone for Forward<B> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<B> std::fmt::Debug for Forward<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("preserve_host", &self.shared.preserve_host)
            .field("forwarding", &self.shared.forwarding)
            .finish_non_exhaustive()
    }
}

impl<B> Forward<B> {
    pub(crate) fn new(client: MemberClient<B>, shared: Arc<ForwardSettings>) -> Self {
        Self {
            client: Arc::new(client),
            shared,
        }
    }
}

impl ForwardSettings {
    /// Prepares a client request for `member`: hygiene first, then our headers, then the URI.
    fn prepare<B>(
        &self,
        req: &mut Request<B>,
        member: &Member,
        upgrading: bool,
    ) -> Result<(), UpstreamError> {
        // the request target's authority (absolute form, HTTP/2 `:authority`) wins over
        // `Host` (RFC 9112 §3.2.2, RFC 9113 §8.3.1)
        let host = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| req.headers().get(header::HOST).cloned());
        // only a valid Host is ever repeated to a member, whoever checked it before
        let host = host.filter(|h| is_valid_host(h.as_bytes()));
        let tls = req.extensions().get::<ClientTls>().is_some();
        adopt_connect_info(req.extensions_mut());
        let client = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
        let h2 = req.version() == Version::HTTP_2;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers, upgrading);
        if h2 {
            // an HTTP/2 client's cookie crumbs, one field for the member (RFC 9113 §8.2.3)
            join_cookie_fields(headers);
        }
        match client {
            Some(ip) => self.forwarding.apply_valid(headers, ip, tls, host.as_ref()),
            None => {
                // fail closed: what the client wrote never passes for what we vouch for
                self.forwarding.strip_untrusted(headers);
                UNKNOWN_CLIENT.call_once(|| {
                    tracing::warn!(
                        "requests reach the forwarder without the client's address: their \
                         forwarding headers are removed and none are added; in an axum app, \
                         enable tower-balancer-proxy's `axum` feature and serve with \
                         into_make_service_with_connect_info::<SocketAddr>(); otherwise insert \
                         tower_balancer::client::ClientAddr (the crate's Server does)"
                    );
                });
            }
        }
        // the client's Host if preserved, else the member's own (made once when it joined)
        let host = host
            .filter(|_| self.preserve_host)
            .or_else(|| member.host_header().cloned());
        match host {
            Some(h) => headers.insert(header::HOST, h),
            // no authority anywhere: the member client finds no origin in the member's
            // endpoint either, refuses, and nothing is sent
            None => headers.remove(header::HOST),
        };
        *req.uri_mut() = member_target(member.endpoint(), req.uri())?;
        *req.version_mut() = Version::HTTP_11;
        Ok(())
    }

    /// Hygiene and reverse rewriting on a member's response. The response leaves in the
    /// proxy's own HTTP version (RFC 9110 §6.2): a member's HTTP/1.0 answer must not make the
    /// client's connection HTTP/1.0, nor close it.
    pub(crate) fn finish(&self, res: &mut Response<MemberBody>) -> Result<(), UpstreamError> {
        *res.version_mut() = Version::HTTP_11;
        // the own HTTP/1.1 path did the rest as it read the head (`h1::head::parse`)
        if !res.body().is_own() {
            clean_answer(res)?;
        }
        if let Some(rw) = &self.rewrite {
            rw.apply_to_members(res.headers_mut(), self.registry.load().members());
        }
        Ok(())
    }
}

/// What every answer read by hyper's client needs before it is forwarded: no hop-by-hop
/// field, and a `Content-Length` only where it is true, once. An answer in a transfer coding
/// other than `chunked` is refused: hyper's client reads it by its chunks, and the client
/// would get the body still coded (`gzip`) with nothing saying so.
fn clean_answer(res: &mut Response<MemberBody>) -> Result<(), UpstreamError> {
    let switching = res.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    let no_content = res.status() == http::StatusCode::NO_CONTENT;
    let headers = res.headers_mut();
    let coded = headers.contains_key(header::TRANSFER_ENCODING);
    if coded && other_coding(headers) {
        return Err(UpstreamError::new(
            UpstreamErrorKind::Protocol,
            "the member's answer is in a transfer coding other than chunked",
        ));
    }
    if no_content || coded {
        // a 204 has no body, and a chunked body was read by its framing: a
        // Content-Length beside either is wrong and must not reach the client (RFC 9110
        // §8.6, RFC 9112 §6.3), or a cache in front would misread what follows
        headers.remove(header::CONTENT_LENGTH);
    } else if let Some(n) = repeated_length(headers) {
        // `42, 42`, two `42` lines or `042`: hyper's client took them for one length; the
        // client gets that one, as a plain number
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    strip_hop_by_hop_answer(headers, switching);
    Ok(())
}

/// Whether `Transfer-Encoding` lists a coding other than `chunked` (empty elements ignored).
fn other_coding(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"chunked"))
}

/// The one length a `Content-Length` given more than once (in a list or on more lines) or
/// with leading zeros states, when all its values agree; `None` when it is plain already.
fn repeated_length(headers: &http::HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    let mut rest = values.peekable();
    let plain = |v: &[u8]| !v.contains(&b',') && (v.len() == 1 || v[0] != b'0');
    if rest.peek().is_none() && plain(first.as_bytes()) {
        return None;
    }
    let mut agreed = None;
    for v in std::iter::once(first).chain(rest) {
        for part in v.to_str().ok()?.split(',') {
            let n: u64 = part.trim().parse().ok()?;
            if agreed.is_some_and(|a| a != n) {
                return None;
            }
            agreed = Some(n);
        }
    }
    agreed
}

/// The request's path and query under the member's base path, in origin form (RFC 9112
/// §3.2.1): what an HTTP/1.1 member is sent. The member client takes the scheme and
/// authority from the member itself, so no absolute URI is made here to be split again.
fn member_target(endpoint: &Uri, uri: &Uri) -> Result<Uri, UpstreamError> {
    let base = endpoint.path().trim_end_matches('/');
    let pq = match uri.path_and_query() {
        // a member at its root (the usual case): the path is shared, not copied
        Some(pq) if base.is_empty() => pq.clone(),
        pq => {
            let pq = pq.map_or("/", PathAndQuery::as_str);
            PathAndQuery::try_from(format!("{base}{pq}"))
                .map_err(|e| UpstreamError::new(UpstreamErrorKind::Connect, e))?
        }
    };
    Ok(Uri::from(pq))
}

/// An HTTP/2 extended CONNECT for WebSocket (RFC 8441).
fn is_h2_websocket<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT
        && req.version() == Version::HTTP_2
        && req
            .extensions()
            .get::<Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Turns a prepared RFC 8441 request into the HTTP/1.1 WebSocket handshake members speak
/// (RFC 6455): `GET` with `Upgrade`, `Connection` and a fresh `Sec-WebSocket-Key`; the
/// version, protocol and extension headers pass as they came.
fn to_h1_websocket<B>(req: &mut Request<B>) -> Result<(), UpstreamError> {
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| UpstreamError::from_kind(UpstreamErrorKind::Connect))?;
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    *req.method_mut() = Method::GET;
    req.extensions_mut().remove::<Protocol>();
    let h = req.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key)
            .map_err(|e| UpstreamError::new(UpstreamErrorKind::Connect, e))?,
    );
    h.entry(header::SEC_WEBSOCKET_VERSION)
        .or_insert(HeaderValue::from_static("13"));
    Ok(())
}

/// An HTTP/1.1 request asking to switch to protocols that are all on the allow-list.
/// `h2c` never is: a member that answers 101 to it would get every later byte of the
/// connection unchecked.
fn is_allowed_upgrade<B>(req: &Request<B>, allowed: &[String]) -> bool {
    let protocols_allowed = || {
        let mut any = false;
        for value in req.headers().get_all(header::UPGRADE) {
            let Ok(value) = value.to_str() else {
                return false;
            };
            for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                // `websocket` or `name/version`
                let name = p.split('/').next().unwrap_or(p).trim();
                if name.eq_ignore_ascii_case("h2c")
                    || !allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
                {
                    return false;
                }
                any = true;
            }
        }
        any
    };
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && protocols_allowed()
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

impl<B> Service<Request<B>> for Forward<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<MemberBody>;
    type Error = UpstreamError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // the pooled client queues requests itself; it is always ready
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(member) = req.extensions().get::<Picked>().map(|p| p.0.clone()) else {
            return ResponseFuture::failed(UpstreamError::new(
                UpstreamErrorKind::Connect,
                NotPicked,
            ));
        };
        let allowed = &self.shared.upgrades;
        let extended =
            is_h2_websocket(&req) && allowed.iter().any(|a| a.eq_ignore_ascii_case("websocket"));
        // any other Upgrade is dropped by hygiene and the request served as a plain one
        let upgrading = extended || is_allowed_upgrade(&req, allowed);
        // the client's side of an upgrade, joined to the member's once it answers 101
        let client_upgrade = if upgrading {
            req.extensions_mut().remove::<OnUpgrade>()
        } else {
            None
        };
        if let Err(e) = self.shared.prepare(&mut req, &member, upgrading) {
            return ResponseFuture::failed(e);
        }
        if extended {
            if let Err(e) = to_h1_websocket(&mut req) {
                return ResponseFuture::failed(e);
            }
        }
        let client_upgrade = client_upgrade.map(|client| {
            Box::new(Upgrading {
                client,
                asked: req.headers().get(header::UPGRADE).cloned(),
            })
        });
        let limited = (member.max_in_flight() != 0).then(|| LimitedMember {
            limit: req
                .extensions()
                .get::<AttemptTimeout>()
                .map_or(ABANDONED_HOLD, |t| t.0),
            member: member.clone(),
        });
        ResponseFuture::pending(
            self.client.request(member, req),
            self.shared.clone(),
            client_upgrade,
            extended,
            limited,
        )
    }
}
