//! The member client: one request to one member over a pooled connection.
//!
//! Why a pool of our own under both client paths: the request already names its member, so
//! the pool needs no key hashing. A request without a body takes the own HTTP/1.1 path
//! (`h1`); any other takes hyper's client connections, which pass every framing and
//! smuggling test hyper's pooled client does. What this file adds is the pooled client's
//! promise on both: a request that never left (the pooled connection was closed by the
//! member while idle) goes out again on another one, and a failure tells failover whether
//! anything was sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::Connection as _;
use tower_balancer::balance::SentTo;
use tower_balancer::registry::Member;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
use tower_service::Service;

use super::body::MemberBody;
use super::client_h2::{h2_exchange, shared_h2};
use super::config::MAX_MEMBER_HEAD_BYTES;
use super::error::{from_hyper, NotSent};
use super::h1::{self, Failure, Io};
use super::origin::{http1_head, NoOrigin, Origin};
use super::pool::Pool;
use super::service::Connector;

/// The answer of one exchange with a member, boxed: it moves out whole when the client goes
/// away and the exchange must run on.
pub(crate) type MemberFuture =
    Pin<Box<dyn Future<Output = Result<Response<MemberBody>, UpstreamError>> + Send>>;

/// How many pooled connections a request may find closed before it opens a new one.
const STALE_TRIES: usize = 8;

/// How soon after a pooled connection is taken the member must close it, with no answer,
/// for the close to be its keep-alive timeout racing the request (the close was on its way
/// before the request arrived, so it comes back within about a round trip), and the
/// request to go out again on a new connection. A member that holds a request longer and
/// then closes has failed it: failover and passive health are told.
pub(crate) const RACE_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

/// Connects to members and keeps their connections.
pub(crate) struct MemberClient<B> {
    inner: Arc<Inner<B>>,
}

pub(super) struct Inner<B> {
    connector: Connector,
    /// Offers HTTP/1.1 alone, for requests to switch protocols.
    connector_h1: Connector,
    pub(super) pool: Pool<B>,
    h1: http1::Builder,
    /// How long a member may take nothing written to hyper's connections (`send_stall`).
    send_timeout: std::time::Duration,
}

impl<B: Send + 'static> MemberClient<B> {
    pub(crate) fn new(
        connector: Connector,
        connector_h1: Connector,
        (idle_timeout, send_timeout): (std::time::Duration, std::time::Duration),
    ) -> Self {
        let mut h1 = http1::Builder::new();
        // a member's response head past this is a 502, as nginx's "upstream sent too big
        // header" (hyper's own limit is ~400 KiB)
        h1.max_buf_size(MAX_MEMBER_HEAD_BYTES);
        Self {
            inner: Arc::new(Inner {
                connector,
                connector_h1,
                pool: Pool::new(idle_timeout),
                h1,
                send_timeout,
            }),
        }
    }
}

impl<B> MemberClient<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Sends `req` (its URI the target in origin form, as `ForwardSettings::prepare` makes
    /// it) to `member`, at the member's own scheme and authority.
    ///
    /// The path is chosen here, before anything is boxed, so that the boxed future is only
    /// as big as the one path it takes: one future for every path was ~1.4 KiB, copied
    /// into its box on every request.
    pub(crate) fn request(&self, member: Arc<Member>, req: Request<B>) -> MemberFuture {
        let inner = self.inner.clone();
        let Some(origin) = Origin::of(member.endpoint()) else {
            return failed(no_origin());
        };
        // a request to switch protocols goes over HTTP/1.1, where `Upgrade` means something
        if req.headers().contains_key(header::UPGRADE) {
            return own_connection(inner, member, req);
        }
        // HTTP/2 is chosen by ALPN: never without TLS (no `h2c`), so a plain member's
        // requests skip the lookup
        let shared = if origin.is_tls() {
            inner.pool.h2(&member)
        } else {
            None
        };
        match shared {
            Some(h2) => shared_h2(inner, member, h2, req),
            None => own_connection(inner, member, req),
        }
    }
}

/// `req` over a member connection of its own (pooled HTTP/1.1, or new), which an HTTP/2
/// client's stream claims a place for (`claim_connection`).
pub(super) fn own_connection<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    mut req: Request<B>,
) -> MemberFuture
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(origin) = Origin::of(member.endpoint()) else {
        return failed(no_origin());
    };
    http1_head(&mut req, &origin);
    if let Err(e) = claim_connection(&req) {
        return failed(e);
    }
    if h1::takes(&req) {
        Box::pin(own_exchange(inner, member, req))
    } else {
        Box::pin(hyper_exchange(inner, member, req))
    }
}

/// A request that goes out on a member connection of its own, rather than a member's shared
/// HTTP/2 one: an HTTP/2 client's stream takes its place under the connection caps for it
/// (`StreamClaim`); with none to be had it fails before anything is sent (503, or 429 past
/// its client's share), never counted against the member nor sent to another one
/// (`UpstreamErrorKind::Capacity`).
fn claim_connection<B>(req: &Request<B>) -> Result<(), UpstreamError> {
    match req.extensions().get::<crate::serve::StreamClaim>() {
        Some(claim) => claim
            .claim()
            .map_err(|e| UpstreamError::new(UpstreamErrorKind::Capacity, e)),
        None => Ok(()),
    }
}

/// One exchange over hyper's HTTP/1.1 client, on a pooled connection if there is one ready.
/// Kept small: the future is boxed per request, and connecting (rare) is a box of its own.
async fn hyper_exchange<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    mut req: Request<B>,
) -> Result<Response<MemberBody>, UpstreamError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let pool = &inner.pool;
    if matches!(*req.method(), Method::GET | Method::HEAD)
        && req.body().size_hint().exact().is_none()
        && !req.headers().contains_key(header::CONTENT_LENGTH)
    {
        // a body of unknown length on a GET or HEAD (a client's chunked one): hyper's client
        // takes such a request for bodiless and drops the body unless told it is chunked
        req.headers_mut().insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    for _ in 0..STALE_TRIES {
        let Some(mut sender) = pool.checkout(&member) else {
            break;
        };
        match sender.try_send_request(req).await {
            Ok(res) => {
                keep(pool, &member, sender, &res);
                return Ok(res.map(MemberBody::hyper));
            }
            Err(mut e) => match e.take_message() {
                // closed by the member while idle: nothing was sent, try another
                Some(r) => req = r,
                None => return Err(from_hyper(e.into_error())),
            },
        }
    }
    Box::pin(connect_and_send(inner.clone(), member, req)).await
}

/// A request without a body, on the client's own HTTP/1.1 path: over a pooled connection
/// if one is open, else a new one (which may choose HTTP/2, and then goes to hyper's).
async fn own_exchange<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    mut req: Request<B>,
) -> Result<Response<MemberBody>, UpstreamError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut head = Vec::with_capacity(512);
    h1::encode(&req, &mut head);
    let method = req.method();
    for _ in 0..STALE_TRIES {
        let Some((io, taken)) = inner.pool.checkout_own(&member) else {
            break;
        };
        let home = (inner.pool.home(), member.clone());
        // the member's keep-alive timeout racing the request: it closed the connection
        // with no answer (or, as some do, with a `408` nobody asked for) as the request
        // arrived. An idempotent request goes out again (RFC 9112 §9.3.1), once, on a new
        // connection, which no keep-alive timeout can be closing. One held past the
        // race's window was the member's to answer: it failed it, and failover decides
        let raced = || method.is_idempotent() && taken.elapsed() < RACE_WINDOW;
        match h1::send(io, &head, method, home).await {
            Ok(res) if res.status() == http::StatusCode::REQUEST_TIMEOUT && raced() => {
                resend(&member, &req);
                break;
            }
            Ok(res) => {
                let mut res = res.map(MemberBody::own);
                // the layers above mark the answer (`ServedBy`, ...): it gets the request's
                // extensions' table, emptied, for its marks. A new one, allocated at the
                // first insert, was ~270 instructions a request
                // (`scripts/instructions-check.sh`)
                if res.extensions().is_empty() {
                    let mut carried = std::mem::take(req.extensions_mut());
                    carried.clear();
                    *res.extensions_mut() = carried;
                }
                return Ok(res);
            }
            // closed by the member as the head went out: nothing was acted on, try another
            Err(Failure::Unsent(_)) => {}
            Err(Failure::Dropped(_)) if raced() => {
                resend(&member, &req);
                break;
            }
            Err(Failure::Dropped(e) | Failure::Failed(e)) => return Err(e.into_upstream()),
        }
    }
    Box::pin(own_fresh(inner, member, req, head)).await
}

/// Counts a request sent to `member` again after a keep-alive race: on the member (so a
/// member that drops every reused connection shows) and on the request, whose log line
/// counts every send.
#[cold]
fn resend<B>(member: &Member, req: &Request<B>) {
    member.stats().metrics().note_resend();
    if let Some(sent) = req.extensions().get::<SentTo>() {
        sent.note_again();
    }
    tracing::debug!(
        member = %member.id(),
        "the member closed a reused connection as the request arrived; sent again on a new one"
    );
}

/// A bodiless request on a new connection (rare, so boxed apart: the pooled path's future is
/// boxed per request, and is kept small).
async fn own_fresh<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    req: Request<B>,
    head: Vec<u8>,
) -> Result<Response<MemberBody>, UpstreamError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = connect(&inner, &member).await?;
    if io.connected().is_negotiated_h2() {
        let origin = Origin::of(member.endpoint()).ok_or_else(no_origin)?;
        return h2_exchange(&inner.pool, &member, io, req, &origin).await;
    }
    let home = (inner.pool.home(), member.clone());
    match h1::send(Box::new(Io::new(io)), &head, req.method(), home).await {
        Ok(res) => Ok(res.map(MemberBody::own)),
        // a connection just made that closed before the request went out: nothing was
        // sent (safe to retry for every method)
        Err(Failure::Unsent(e)) => Err(UpstreamError::new(UpstreamErrorKind::Connect, e)),
        Err(Failure::Dropped(e) | Failure::Failed(e)) => Err(e.into_upstream()),
    }
}

/// A request that fails before anything is sent.
pub(super) fn failed(e: UpstreamError) -> MemberFuture {
    Box::pin(std::future::ready(Err(e)))
}

pub(super) fn no_origin() -> UpstreamError {
    UpstreamError::new(UpstreamErrorKind::Connect, NoOrigin)
}

/// A new connection to the member.
async fn connect<B>(
    inner: &Inner<B>,
    member: &Member,
) -> Result<<Connector as Service<Uri>>::Response, UpstreamError> {
    connect_with(&inner.connector, member).await
}

/// A new connection to the member by `connector`.
async fn connect_with(
    connector: &Connector,
    member: &Member,
) -> Result<<Connector as Service<Uri>>::Response, UpstreamError> {
    let origin = Origin::of(member.endpoint()).ok_or_else(no_origin)?;
    super::connect::open(connector, origin.root()?).await
}

/// A new connection to the member, and the request on it.
async fn connect_and_send<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    req: Request<B>,
) -> Result<Response<MemberBody>, UpstreamError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let connector = if upgrade {
        &inner.connector_h1
    } else {
        &inner.connector
    };
    let io = connect_with(connector, &member).await?;
    if io.connected().is_negotiated_h2() {
        let origin = Origin::of(member.endpoint()).ok_or_else(no_origin)?;
        return h2_exchange(&inner.pool, &member, io, req, &origin).await;
    }
    if !upgrade {
        // offered HTTP/2, it chose HTTP/1.1
    }
    // hyper's connection task waits on its socket alone: a member that stops reading would
    // hold it, and its descriptor, for ever (`send_stall`)
    let io = super::send_stall::SendStall::new(io, inner.send_timeout);
    let (mut sender, conn) = inner
        .h1
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::new(UpstreamErrorKind::Connect, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "member connection closed with an error");
        }
    });
    match sender.try_send_request(req).await {
        Ok(res) => {
            keep(&inner.pool, &member, sender, &res);
            Ok(res.map(MemberBody::hyper))
        }
        Err(e) => Err(fresh_failure(e)),
    }
}

/// A request's failure on a connection just opened for it: when the connection closed
/// before the request went out, nothing was sent (a connect failure, safe to retry for
/// every method).
fn fresh_failure<B>(mut e: hyper::client::conn::TrySendError<Request<B>>) -> UpstreamError {
    match e.take_message() {
        Some(_) => UpstreamError::new(UpstreamErrorKind::Connect, NotSent(e.into_error())),
        None => from_hyper(e.into_error()),
    }
}

/// Pools the connection unless the answer switched protocols (the connection is the
/// tunnel's now).
fn keep<B: Send + 'static>(
    pool: &Pool<B>,
    member: &Arc<Member>,
    sender: http1::SendRequest<B>,
    res: &Response<Incoming>,
) {
    if res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        pool.checkin(member, sender);
    }
}
