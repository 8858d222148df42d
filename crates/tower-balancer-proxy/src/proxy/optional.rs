//! A layer that is in the stack or not, chosen when the stack is built.
//!
//! Why: tower-http's `TraceLayer` costs about 2,350 instructions a request even when its
//! span is filtered out (a clock read, the classifier, a body wrapper that enters the span
//! on every poll), 3.6% of the binary's whole request, and marking Cookie and Authorization
//! sensitive for it another 1,000. With debug logging off, which is the default, the span
//! and its child events are never recorded, so both are left out (the stack is rebuilt on
//! reload, so the choice follows the log level then). tower's
//! `option_layer` cannot do this: both of its arms must answer with the same response type,
//! and the trace layer wraps the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower_balancer::BoxError;
use tower_layer::Layer;
use tower_service::Service;

/// `L` when set, nothing when `None`.
#[derive(Debug, Clone)]
pub(crate) struct OptionalLayer<L>(pub(crate) Option<L>);

impl<L: Layer<S>, S> Layer<S> for OptionalLayer<L> {
    type Service = Optional<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => Optional::On(layer.layer(inner)),
            None => Optional::Off(inner),
        }
    }
}

/// The service of [`OptionalLayer`]: the layered service, or the inner one as it is.
#[derive(Debug, Clone)]
pub(crate) enum Optional<A, B> {
    On(A),
    Off(B),
}

impl<A, B, ReqB, RA, RB> Service<Request<ReqB>> for Optional<A, B>
where
    A: Service<Request<ReqB>, Response = Response<RA>>,
    B: Service<Request<ReqB>, Response = Response<RB>>,
    A::Error: Into<BoxError>,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<Pin<Box<RA>>, RB>>;
    type Error = BoxError;
    type Future = OptionalFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::On(a) => a.poll_ready(cx).map_err(Into::into),
            Self::Off(b) => b.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        match self {
            Self::On(a) => OptionalFuture::On {
                fut: Box::pin(a.call(req)),
            },
            Self::Off(b) => OptionalFuture::Off { fut: b.call(req) },
        }
    }
}

pin_project! {
    /// The future of [`Optional`]. The layer's future and body are boxed: with the layer off
    /// (the default) an inline one would make every request's future and answer bigger for
    /// nothing, and they are copied each time they move between layers.
    #[project = Projected]
    pub(crate) enum OptionalFuture<FA, FB> {
        On { fut: Pin<Box<FA>> },
        Off { #[pin] fut: FB },
    }
}

impl<FA, FB, RA, RB, EA, EB> Future for OptionalFuture<FA, FB>
where
    FA: Future<Output = Result<Response<RA>, EA>>,
    FB: Future<Output = Result<Response<RB>, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<Response<Either<Pin<Box<RA>>, RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match self.project() {
            Projected::On { fut } => ready!(fut.as_mut().poll(cx))
                .map(|r| r.map(|b| Either::Left(Box::pin(b))))
                .map_err(Into::into),
            Projected::Off { fut } => ready!(fut.poll(cx))
                .map(|r| r.map(Either::Right))
                .map_err(Into::into),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower::layer::util::Identity;
    use tower::util::MapResponseLayer;
    use tower::{service_fn, ServiceExt};

    fn inner() -> impl Service<
        Request<()>,
        Response = Response<Full<Bytes>>,
        Error = std::convert::Infallible,
        Future = impl Future + Send,
    > + Clone {
        service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
        })
    }

    #[tokio::test]
    async fn on_it_layers_and_off_it_passes_through() {
        let mark = MapResponseLayer::new(|mut r: Response<Full<Bytes>>| {
            r.headers_mut().insert(
                http::header::SERVER,
                http::HeaderValue::from_static("marked"),
            );
            r
        });
        let on = OptionalLayer(Some(mark.clone())).layer(inner());
        let res = on.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.headers()[http::header::SERVER], "marked");
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");

        let off = OptionalLayer(None::<Identity>).layer(inner());
        let res = off.oneshot(Request::new(())).await.unwrap();
        assert!(res.headers().get(http::header::SERVER).is_none());
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
    }
}
