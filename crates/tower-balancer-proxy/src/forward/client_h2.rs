//! The member client's HTTP/2 side: a request over a member's shared HTTP/2 connection,
//! and the first request on a new connection that chose HTTP/2.
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
use super::pool::Pool;
use super::service::Connector;

/// `req` over the member's shared HTTP/2 connection `h2`.
pub(super) fn shared_h2<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    h2: http2::SendRequest<B>,
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

/// One exchange over the member's shared HTTP/2 connection; if it closed before the request
/// went out (a `GOAWAY`), over a connection of its own instead.
///
/// Not on the member's next HTTP/2 connection with the others it sent back, made once for
/// all of them: tried (round 14), a member closing a connection after 10 requests left
/// most of a burst waiting for connections that took ten each, and 819–921 of 3,000 got
/// 502 once their resends were spent, where a connection each gave 2–68.
async fn h2_pooled<B>(
    inner: Arc<Inner<B>>,
    member: Arc<Member>,
    mut h2: http2::SendRequest<B>,
    req: Request<B>,
) -> Result<Response<MemberBody>, UpstreamError>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let upload = req.extensions().get::<UploadProgress>().cloned();
    match h2.try_send_request(req).await {
        Ok(res) => Ok(res.map(MemberBody::hyper)),
        Err(mut e) => match e.take_message() {
            // in HTTP/2's form still: `own_connection` makes it HTTP/1.1's, to the
            // authority it carries
            Some(req) => own_connection(inner, member, req).await,
            None => Err(h2_failure(e.into_error(), upload.as_ref())),
        },
    }
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
