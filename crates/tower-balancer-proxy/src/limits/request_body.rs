//! The idle limit on a client's request body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use http_body::Body;
use http_body_util::Either;
use tower_http::timeout::TimeoutBody;
use tower_layer::Layer;
use tower_service::Service;

/// A client's request body under [`RequestBodyIdle`]: the body as it came when it is already
/// complete (a `GET` with no body pays for no timer), else wrapped in tower-http's
/// [`TimeoutBody`], boxed so the stack's body stays `Unpin` as the pooled client needs.
pub type ClientBody<B> = Either<B, Pin<Box<TimeoutBody<B>>>>;

/// Fails a request body that sends nothing for `timeout` (see the [module docs](super)).
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_balancer_proxy::limits::RequestBodyIdleLayer;
///
/// let svc = ServiceBuilder::new()
///     .layer(RequestBodyIdleLayer::new(Duration::from_secs(60)))
///     .service_fn(|req: http::Request<_>| async move {
///         // the body fails with tower_http::timeout::TimeoutError after 60 s of silence
///         let _body: tower_balancer_proxy::limits::ClientBody<String> = req.into_body();
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     });
/// # let _ = svc;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequestBodyIdleLayer {
    timeout: Duration,
}

impl RequestBodyIdleLayer {
    /// Bodies may be silent for at most `timeout` between two frames.
    #[must_use]
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for RequestBodyIdleLayer {
    type Service = RequestBodyIdle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestBodyIdle {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service made by [`RequestBodyIdleLayer`].
#[derive(Debug, Clone)]
pub struct RequestBodyIdle<S> {
    inner: S,
    timeout: Duration,
}

impl<S> RequestBodyIdle<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for RequestBodyIdle<S>
where
    S: Service<Request<ClientBody<B>>>,
    B: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let timeout = self.timeout;
        self.inner.call(req.map(|body| {
            if body.is_end_stream() {
                Either::Left(body)
            } else {
                Either::Right(Box::pin(TimeoutBody::new(timeout, body)))
            }
        }))
    }
}
