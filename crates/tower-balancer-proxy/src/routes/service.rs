//! The router service: sends each request to its route's balancer, or answers it (a fixed
//! response, a redirect, 404 for no route, 421 for a misdirected one).
//!
//! Why a service over a list of stacks rather than a layer: a layer wraps one inner
//! service, and a route chooses among several balancers, each with its own members,
//! strategy and stickiness. Without a route table every request goes to the first stack
//! directly, with no clone and no lookup: the one-balancer file costs what it did.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::ServiceExt;
use tower_balancer::client::ClientTlsName;
use tower_balancer::BoxError;
use tower_service::Service;

use super::paths::{join, rewrite_uri, PathReverse};
use super::table::{request_host, Action, RouteTable, Selected};

/// The response body: a balancer's, or the router's own answer.
pub(crate) type RoutedBody<B> = Either<B, Full<Bytes>>;

/// Routes requests among `lanes` (one stack per balancer) by `table`.
#[derive(Debug, Clone)]
pub(crate) struct Router<S> {
    table: Option<Arc<RouteTable>>,
    first: S,
    lanes: Arc<[S]>,
}

impl<S: Clone> Router<S> {
    /// Every request to `stack`: the file without virtual hosts.
    pub(crate) fn single(stack: S) -> Self {
        Self {
            table: None,
            lanes: Arc::from(vec![stack.clone()]),
            first: stack,
        }
    }

    /// Requests routed by `table` among `first` (lane 0) and `rest` (lanes 1…; a route to
    /// a lane there is not is answered 404, which the file's check rules out).
    pub(crate) fn new(table: Arc<RouteTable>, first: S, rest: Vec<S>) -> Self {
        let mut lanes = Vec::with_capacity(rest.len() + 1);
        lanes.push(first.clone());
        lanes.extend(rest);
        Self {
            table: Some(table),
            first,
            lanes: Arc::from(lanes),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Router<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<RoutedBody<RB>>;
    type Error = BoxError;
    type Future = RouterFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.table.is_some() {
            // the lane is known at `call`: its clone is readied there
            return Poll::Ready(Ok(()));
        }
        self.first.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(table) = self.table.clone() else {
            return RouterFuture::direct(self.first.call(req));
        };
        self.route(&table, req)
    }
}

impl<S: Clone> Router<S> {
    fn route<B>(&self, table: &RouteTable, mut req: Request<B>) -> RouterFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        let sni = req.extensions().get::<ClientTlsName>().map(|n| n.0.clone());
        let route = match table.select(&req, sni.as_deref()) {
            Selected::Route(route) => route,
            Selected::NoRoute => return RouterFuture::answer(text(StatusCode::NOT_FOUND)),
            Selected::Misdirected => {
                return RouterFuture::answer(text(StatusCode::MISDIRECTED_REQUEST))
            }
        };
        match &route.action {
            Action::Respond {
                status,
                body,
                content_type,
            } => {
                let mut res = Response::new(Full::new(body.clone()));
                *res.status_mut() = *status;
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
                RouterFuture::answer(res)
            }
            Action::Redirect { to, status } => {
                let mut target = join(to, route.remainder(req.uri().path()));
                if let Some(q) = req.uri().query() {
                    target.push('?');
                    target.push_str(q);
                }
                let Ok(location) = HeaderValue::try_from(target) else {
                    return RouterFuture::answer(text(StatusCode::BAD_REQUEST));
                };
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = *status;
                res.headers_mut().insert(header::LOCATION, location);
                RouterFuture::answer(res)
            }
            Action::Balancer { lane, rewrite } => {
                let Some(stack) = self.lanes.get(*lane) else {
                    return RouterFuture::answer(text(StatusCode::NOT_FOUND));
                };
                let mut reverse = None;
                if let Some(with) = rewrite {
                    let Some(uri) = rewrite_uri(req.uri(), route.prefix(), with) else {
                        return RouterFuture::answer(text(StatusCode::BAD_REQUEST));
                    };
                    reverse = Some(PathReverse {
                        inner: with.clone(),
                        outer: route.prefix().to_owned(),
                        host: request_host(&req).map(str::to_owned),
                    });
                    *req.uri_mut() = uri;
                }
                RouterFuture::lane(stack.clone().oneshot(req), reverse)
            }
        }
    }
}

/// A short text answer with `status`'s reason.
fn text(status: StatusCode) -> Response<Full<Bytes>> {
    let reason = status.canonical_reason().unwrap_or("");
    let mut res = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

pin_project! {
    /// The response future of [`Router`].
    pub(crate) struct RouterFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B>
    where
        S: Service<Request<B>>,
    {
        Direct { #[pin] fut: S::Future },
        // boxed, as the answer is: the stack's clone and the request would make every
        // request's future (and the copies of it) larger, routed or not
        Lane { fut: Pin<Box<Oneshot<S, Request<B>>>>, reverse: Option<Box<PathReverse>> },
        Answer { res: Option<Box<Response<Full<Bytes>>>> },
    }
}

impl<S: Service<Request<B>>, B> RouterFuture<S, B> {
    fn direct(fut: S::Future) -> Self {
        Self {
            kind: Kind::Direct { fut },
        }
    }
    fn lane(fut: Oneshot<S, Request<B>>, reverse: Option<PathReverse>) -> Self {
        Self {
            kind: Kind::Lane {
                fut: Box::pin(fut),
                reverse: reverse.map(Box::new),
            },
        }
    }
    fn answer(res: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Answer {
                res: Some(Box::new(res)),
            },
        }
    }
}

impl<S, B, RB> Future for RouterFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<RoutedBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { fut } => {
                let res = ready!(fut.poll(cx)).map_err(Into::into)?;
                Poll::Ready(Ok(res.map(Either::Left)))
            }
            KindProj::Lane { fut, reverse } => {
                let mut res = ready!(fut.as_mut().poll(cx)).map_err(Into::into)?;
                if let Some(reverse) = reverse {
                    reverse.apply(res.headers_mut());
                }
                Poll::Ready(Ok(res.map(Either::Left)))
            }
            KindProj::Answer { res } => match res.take() {
                Some(res) => Poll::Ready(Ok((*res).map(Either::Right))),
                None => Poll::Ready(Err("router future polled after completion".into())),
            },
        }
    }
}
