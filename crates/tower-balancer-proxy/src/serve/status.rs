//! Stack errors as responses: the one place an error from the layers becomes the status a
//! client sees (408 for its own silent body, else `error_status`'s 502/503/504), with a
//! short text and never the error's words, which go to the log with their whole cause chain.
//!
//! The server applies it to every stack it serves; [`StatusOnErrorLayer`] applies it to a
//! stack mounted elsewhere (axum's `fallback_service`, hyper's `serve_connection`), whose
//! error type must then be `Infallible`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_balancer::balance::BalanceError;

use super::stream_claim::StreamRefused;
use crate::limits::RateLimited;
use crate::proxy::request_id::X_REQUEST_ID;
use tower_balancer::error::{error_status, find_in_chain, DisplayChain};
use tower_balancer::log_budget::{LogBudget, PER_SECOND};
use tower_balancer::BoxError;
use tower_layer::Layer;
use tower_service::Service;

/// A response body: the stack's own, or the short text of an error status.
pub type ServeBody<B> = Either<B, Full<Bytes>>;

/// The status a client gets for an error from the stack: 408 when its own request body went
/// silent past the idle limit ([`RequestBodyIdleLayer`](crate::limits::RequestBodyIdleLayer)),
/// else [`error_status`]'s answer.
#[must_use]
pub fn client_status(err: &(dyn std::error::Error + 'static)) -> StatusCode {
    if find_in_chain::<tower_http::timeout::TimeoutError>(err).is_some() {
        return StatusCode::REQUEST_TIMEOUT;
    }
    if find_in_chain::<RateLimited>(err).is_some() {
        return StatusCode::TOO_MANY_REQUESTS;
    }
    match find_in_chain::<StreamRefused>(err) {
        Some(StreamRefused::Client) => StatusCode::TOO_MANY_REQUESTS,
        Some(StreamRefused::Server) => StatusCode::SERVICE_UNAVAILABLE,
        None => error_status(err),
    }
}

/// The answer when the stack fails: the status from [`client_status`] and its reason
/// phrase, never the error's text, which is logged with its causes.
pub(crate) fn error_response<B>(e: &BoxError) -> Response<ServeBody<B>> {
    let status = client_status(&**e);
    log_failure(e, status, None);
    error_page(status, e)
}

/// Marks an answer the per-client rate limit gave, for the server's counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateRefusal;

/// Logs a failed request: WARN (at most `PER_SECOND` lines a second, the rest at DEBUG and
/// counted), at INFO when the client's own body failed it, except a client over its rate, at DEBUG (a flood must not
/// write a line per refused request: that is the cost the limit is there to spare), and a
/// client's WebSocket handshake a member did not take (a request any client can repeat at
/// will, on any plain path: not a member's fault), at DEBUG too, as is an HTTP/2 stream
/// refused a place for its member connection (`StreamRefused`, said at WARN once a second).
fn log_failure(e: &BoxError, status: StatusCode, id: Option<&HeaderValue>) {
    let id = id.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if status == StatusCode::TOO_MANY_REQUESTS || find_in_chain::<StreamRefused>(&**e).is_some() {
        // a client past its share or rate, or a stream at the cap (said once a second)
        tracing::debug!(request_id = id, error = %DisplayChain(&**e), status = status.as_u16(), "request refused");
    } else if tower_balancer::upstream::find_upstream_error(&**e)
        .is_some_and(|u| u.kind() == tower_balancer::upstream::UpstreamErrorKind::NotSwitched)
    {
        tracing::debug!(request_id = id, error = %DisplayChain(&**e), status = status.as_u16(), "request failed");
    } else if client_failed(&**e) {
        // the client's own doing (a bad chunk, a body cut short): INFO, on a budget of its
        // own, so a client repeating it at will neither warns nor crowds out members' failures
        static BUDGET: LogBudget =
            LogBudget::info(PER_SECOND, "requests failed by the client's own body");
        if BUDGET.admit() {
            tracing::info!(request_id = id, error = %DisplayChain(&**e), status = status.as_u16(), "request failed");
        } else {
            tracing::debug!(request_id = id, error = %DisplayChain(&**e), status = status.as_u16(), "request failed");
        }
    } else {
        // at most `PER_SECOND` lines a second: a cluster that is down fails every request
        static BUDGET: LogBudget = LogBudget::warn(PER_SECOND, "failed requests");
        if BUDGET.admit() {
            tracing::warn!(request_id = id, error = %DisplayChain(&**e), status = status.as_u16(), "request failed");
        } else {
            tracing::debug!(request_id = id, error = %DisplayChain(&**e), status = status.as_u16(), "request failed");
        }
    }
}

/// The request failed because of the client's body (it broke its framing, or ended early).
fn client_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    use tower_balancer::upstream::{find_upstream_error, UpstreamErrorKind};
    find_in_chain::<tower_balancer::failover::FailoverError>(e)
        .is_some_and(|f| f.reason() == tower_balancer::failover::NotRetried::ClientError)
        || find_upstream_error(e).is_some_and(|u| u.kind() == UpstreamErrorKind::ClientBody)
}

/// The page for `status`, with `Retry-After` when the members were only busy (every one at
/// its limit, the queue full or timed out) or the client was over its rate: the client may
/// try again after that many seconds.
fn error_page<B>(status: StatusCode, e: &BoxError) -> Response<ServeBody<B>> {
    let mut res = status_page(status);
    let limited = find_in_chain::<RateLimited>(&**e);
    if limited.is_some() {
        res.extensions_mut().insert(RateRefusal);
    }
    let retry = match limited {
        // whole seconds, rounded up: a client told 0 would come straight back
        Some(r) => Some(r.retry_after().as_secs() + u64::from(r.retry_after().subsec_nanos() > 0)),
        None => (find_in_chain::<BalanceError>(&**e).is_some_and(BalanceError::is_busy)
            || find_in_chain::<StreamRefused>(&**e).is_some())
        .then_some(1),
    };
    if let Some(secs) = retry {
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    res
}

/// [`error_response`] for a request with an id: the log line names it and the answer
/// carries it in `X-Request-Id`, as the member's answers do.
pub(crate) fn error_response_with_id<B>(e: &BoxError, id: HeaderValue) -> Response<ServeBody<B>> {
    let status = client_status(&**e);
    log_failure(e, status, Some(&id));
    let mut res = error_page(status, e);
    res.headers_mut().insert(X_REQUEST_ID, id);
    res
}

/// The page for a member's answer whose body failed before any of it was sent: the 502 a
/// failed member gets, with the id the answer carried (`X-Request-Id`), if any.
pub(super) fn body_failed_page<B>(answer: &http::response::Parts) -> Response<ServeBody<B>> {
    let mut page = status_page(StatusCode::BAD_GATEWAY);
    // the access log writes what the client got, not the member's status
    if let Some(log) = answer.extensions.get::<crate::access_log::Replaced>() {
        log.with(StatusCode::BAD_GATEWAY);
    }
    if let Some(id) = answer.headers.get(X_REQUEST_ID) {
        page.headers_mut().insert(X_REQUEST_ID, id.clone());
    }
    page
}

/// A short text page for `status`.
pub(super) fn status_page<B>(status: StatusCode) -> Response<ServeBody<B>> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(page_text(status)))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// The text of [`status_page`]: the code and its reason phrase.
pub(crate) fn page_text(status: StatusCode) -> String {
    format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// Turns a stack's errors into responses, so the stack's error type is `Infallible`.
///
/// ```
/// use std::convert::Infallible;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_balancer::balance::BalanceError;
/// use tower_balancer_proxy::serve::StatusOnErrorLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let failing = service_fn(|_: http::Request<()>| async {
///     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(BalanceError::NoEligibleMember)
/// });
/// let svc = StatusOnErrorLayer::new().layer(failing);
/// let res: Result<_, Infallible> = svc.oneshot(http::Request::new(())).await;
/// assert_eq!(res.unwrap().status(), 503);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusOnErrorLayer;

impl StatusOnErrorLayer {
    /// The layer.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for StatusOnErrorLayer {
    type Service = StatusOnError<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatusOnError {
            inner,
            refused: None,
        }
    }
}

/// The service of [`StatusOnErrorLayer`].
#[derive(Debug, Clone)]
pub struct StatusOnError<S> {
    inner: S,
    /// The error `poll_ready` gave, answered to the next call.
    refused: Option<BoxErrorHolder>,
}

/// A readiness error kept for the next call (cloning the service does not copy it).
#[derive(Debug, Default)]
pub(crate) struct BoxErrorHolder(pub(crate) Option<BoxError>);

impl Clone for BoxErrorHolder {
    fn clone(&self) -> Self {
        Self(None)
    }
}

impl<S, Req, B> Service<Req> for StatusOnError<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ServeBody<B>>;
    type Error = Infallible;
    type Future = StatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if let Err(e) = ready!(self.inner.poll_ready(cx)) {
            self.refused = Some(BoxErrorHolder(Some(e.into())));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.refused.take().and_then(|h| h.0) {
            Some(e) => StatusFuture {
                inner: None,
                refused: Some(e),
            },
            None => StatusFuture {
                inner: Some(self.inner.call(req)),
                refused: None,
            },
        }
    }
}

pin_project! {
    /// The future of [`StatusOnError`].
    #[derive(Debug)]
    pub struct StatusFuture<F> {
        #[pin]
        inner: Option<F>,
        refused: Option<BoxError>,
    }
}

impl<F, B, E> Future for StatusFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ServeBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(e) = this.refused.take() {
            return Poll::Ready(Ok(error_response(&e)));
        }
        // polled again after it answered: nothing more to give
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Pending;
        };
        Poll::Ready(Ok(match ready!(inner.poll(cx)) {
            Ok(r) => r.map(Either::Left),
            Err(e) => error_response(&e.into()),
        }))
    }
}
