//! The idle limit on a member's answer body: a member that sends its head and then goes
//! silent is cut off once it has sent nothing for the limit (nginx's `proxy_read_timeout`).
//!
//! Why not tower-http's `ResponseBodyTimeoutLayer`, which did this before: it makes a tokio
//! sleep on every poll for a frame, before asking the body, so each frame of every answer
//! registered a timer in the runtime's timer wheel and took it out again (about 600
//! instructions of a proxied request's ~52,000, `scripts/instructions-check.sh`). Here the
//! body is asked first, a timer is made only when it has nothing yet, and that timer waits
//! on the connection's own ([`task_timer`](tower_balancer::task_timer)) when the server
//! gave it one.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_balancer::task_timer::{self, TaskSleep};
use tower_balancer::BoxError;
use tower_layer::Layer;
use tower_service::Service;

/// A member's answer body sent nothing for the idle limit.
#[derive(Debug, thiserror::Error)]
#[error("the member sent nothing of its answer's body for {0:?}")]
pub struct ResponseBodyIdleError(Duration);

/// Fails a member's answer body that sends nothing for `timeout` between two frames; the
/// client's connection is then closed, since its answer is cut short.
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_balancer_proxy::limits::{ResponseBodyIdleLayer, IdleBody};
///
/// let svc = ServiceBuilder::new()
///     .layer(ResponseBodyIdleLayer::new(Duration::from_secs(60)))
///     .service_fn(|_req: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
///     });
/// // answers come back with bodies that fail after 60 s of silence
/// fn body_of<S: tower::Service<http::Request<()>, Response = http::Response<IdleBody<String>>>>(
///     _: &S,
/// ) {
/// }
/// body_of(&svc);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ResponseBodyIdleLayer {
    timeout: Duration,
}

impl ResponseBodyIdleLayer {
    /// Answer bodies may be silent for at most `timeout` between two frames.
    #[must_use]
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for ResponseBodyIdleLayer {
    type Service = ResponseBodyIdle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseBodyIdle {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service made by [`ResponseBodyIdleLayer`].
#[derive(Debug, Clone)]
pub struct ResponseBodyIdle<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B, RB> Service<Request<B>> for ResponseBodyIdle<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<IdleBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            timeout: self.timeout,
        }
    }
}

pin_project! {
    /// The response future of [`ResponseBodyIdle`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        timeout: Duration,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<IdleBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let timeout = *this.timeout;
        Poll::Ready(Ok(res.map(|body| IdleBody {
            body,
            timeout,
            sleep: None,
        })))
    }
}

pin_project! {
    /// A member's answer body under [`ResponseBodyIdle`].
    #[derive(Debug)]
    pub struct IdleBody<B> {
        #[pin]
        body: B,
        timeout: Duration,
        // made when the body first has nothing, dropped with each frame
        sleep: Option<TaskSleep>,
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            *this.sleep = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = *this.timeout;
        let sleep = this.sleep.get_or_insert_with(|| {
            // a limit past the clock's range is no limit
            task_timer::sleep_until(tower_balancer::deadline::deadline(Instant::now(), timeout))
        });
        match Pin::new(sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ResponseBodyIdleError(timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};

    const S: Duration = Duration::from_secs(1);

    /// A body that sends a frame after each of its gaps, then ends.
    struct Paced {
        gaps: std::collections::VecDeque<Duration>,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl Body for Paced {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let Some(gap) = self.gaps.front().copied() else {
                return Poll::Ready(None);
            };
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
            self.gaps.pop_front();
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    async fn through_the_layer(gaps: Vec<Duration>, limit: Duration) -> Result<usize, BoxError> {
        let svc = ResponseBodyIdleLayer::new(limit).layer(service_fn(move |_: Request<()>| {
            let body = Paced {
                gaps: gaps.clone().into(),
                sleep: None,
            };
            async move { Ok::<_, std::convert::Infallible>(Response::new(body)) }
        }));
        let res = svc
            .oneshot(Request::new(()))
            .await
            .unwrap_or_else(|e| match e {});
        let collected = res.into_body().collect().await?;
        Ok(collected.to_bytes().len())
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_with_gaps_under_the_limit_passes_whole_however_long() {
        // 2.4 s in all, never 1 s silent: an idle limit, not a total one
        let got = through_the_layer(vec![S * 4 / 5; 3], S).await.unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_silent_past_the_limit_fails_at_the_limit() {
        let start = Instant::now();
        let err = through_the_layer(vec![S / 2, 5 * S], S).await.unwrap_err();
        assert!(err.is::<ResponseBodyIdleError>(), "{err}");
        // half a second to the first frame, then one second of silence
        assert_eq!(start.elapsed(), S * 3 / 2);
    }
}
