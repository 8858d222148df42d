//! The member client's HTTP/2 side: a request over a member's shared HTTP/2 connection,
//! the first request on a new connection that chose HTTP/2, and a request waiting for the
//! connection a request beside it is making.
//!
//! Why apart from `client.rs`: one connection carries every request to such a member, so
//! what goes wrong is the connection's (a `GOAWAY`, a close before the request went out),
//! and is mended by going over HTTP/1.1 instead (`client.rs`'s own connections).

use std::sync::Arc;

use http::{Request, Response, Uri};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_balancer::balance::UploadProgress;
use tower_balancer::registry::Member;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
use tower_service::Service;

use super::body::MemberBody;
use super::client::{failed, no_origin, own_connection, Inner, MemberFuture};
use super::error::{from_hyper, NotSent};
use super::origin::{h2_target, Origin};
use super::pool::{H2Route, Pool};
use super::service::Connector;

/// `req` over the member's shared HTTP/2 connection `h2` (and which it is).
pub(super) fn shared_h2<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    h2: (http2::SendRequest<B>, u64),
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
    match h2_target(&mut req, &origin) {
        Ok(()) => Box::pin(h2_pooled(inner, member, h2, req)),
        Err(e) => failed(e),
    }
}

/// `req`, once the member's HTTP/2 connection a request beside it is making is made (over
/// it), or failed or chose HTTP/1.1 (over a connection of its own).
pub(super) async fn after_connect<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    req: Request<B>,
    made: Arc<tokio::sync::Semaphore>,
) -> Result<Response<MemberBody>, UpstreamError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // never granted a permit: it fails once closed, which is what is awaited
    let _ = made.acquire().await;
    match inner.pool.h2(&member) {
        Some(h2) => shared_h2(inner, member, h2, req).await,
        None => own_connection(inner, member, req).await,
    }
}

/// How many of the member's shared HTTP/2 connections a request tries when each sends it
/// back unsent, before it goes on a connection of its own.
const SHARED_TRIES: usize = 2;

/// One exchange over the member's shared HTTP/2 connection. One going away (a `GOAWAY`,
/// nginx's after 1,000 requests) sends back the requests it had not sent: they go on the
/// member's next one, made once for all of them (a request that finds none open makes it,
/// the rest wait for it), not on a connection each (round 13: a burst of a hundred streams
/// made a hundred).
async fn h2_pooled<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    (mut h2, mut id): (http2::SendRequest<B>, u64),
    mut req: Request<B>,
) -> Result<Response<MemberBody>, UpstreamError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let upload = req.extensions().get::<UploadProgress>().cloned();
    for _ in 0..SHARED_TRIES {
        match h2.try_send_request(req).await {
            Ok(res) => return Ok(res.map(MemberBody::hyper)),
            Err(mut e) => match e.take_message() {
                Some(back) => req = back,
                None => return Err(h2_failure(e.into_error(), upload.as_ref())),
            },
        }
        inner.pool.forget_h2(&member, id);
        let next = match inner.pool.h2_route(&member, true) {
            H2Route::Ready(next, next_id) => Some((next, next_id)),
            H2Route::Wait(made) => {
                // never granted a permit: it fails once closed, which is what is awaited
                let _ = made.acquire().await;
                inner.pool.h2(&member)
            }
            H2Route::Connect(connecting) => {
                let _connecting = connecting;
                return own_connection(inner, member, req).await;
            }
            H2Route::Unknown => None,
        };
        match next {
            Some(next) => (h2, id) = next,
            None => break,
        }
    }
    // the request is in HTTP/2's form still: `own_connection` makes it HTTP/1.1's, to the
    // authority it carries
    own_connection(inner, member, req).await
}

/// An HTTP/2 exchange's failure: the client's when its body failed, which the member's
/// connection cannot tell (it sees only the stream the body's failure reset; an HTTP/1.1
/// connection carries the body's error itself), else as the error says.
fn h2_failure(e: hyper::Error, upload: Option<&UploadProgress>) -> UpstreamError {
    if upload.is_some_and(UploadProgress::client_failed) {
        return UpstreamError::new(UpstreamErrorKind::ClientBody, e);
    }
    from_hyper(e)
}

/// The first request on a connection that chose HTTP/2 by ALPN; the connection is then the
/// member's shared one.
pub(super) async fn h2_exchange<B>(
    pool: &Pool<B>,
    member: &Arc<Member>,
    io: <Connector as Service<Uri>>::Response,
    mut req: Request<B>,
    origin: &Origin<'_>,
) -> Result<Response<MemberBody>, UpstreamError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::new(UpstreamErrorKind::Connect, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "member connection closed with an error");
        }
    });
    h2_target(&mut req, origin)?;
    pool.set_h2(member, sender.clone());
    let upload = req.extensions().get::<UploadProgress>().cloned();
    match sender.try_send_request(req).await {
        Ok(res) => Ok(res.map(MemberBody::hyper)),
        // a connection just made that closed before the request went out: nothing sent
        Err(mut e) => match e.take_message() {
            Some(_) => Err(UpstreamError::new(
                UpstreamErrorKind::Connect,
                NotSent(e.into_error()),
            )),
            None => Err(h2_failure(e.into_error(), upload.as_ref())),
        },
    }
}
