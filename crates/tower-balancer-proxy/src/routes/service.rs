//! The router service: sends each request to its route's balancer, or answers it (a fixed
//! response, a redirect, 404 for no route, 421 for a misdirected one).
//!
//! Why a service over a list of stacks rather than a layer: a layer wraps one inner
//! service, and a route chooses among several balancers, each with its own members,
//! strategy and stickiness. Without a route table every request goes to the first stack
//! directly, with no clone and no lookup: the one-balancer file costs what it did.

use std::borrow::Cow;
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

use super::normalize::normalize;
use super::paths::{join, rewrite_uri, PathReverse};
use super::table::{Action, RouteTable, Selected};

/// The response body: a balancer's, or the router's own answer.
pub(crate) type RoutedBody<B> = Either<B, Full<Bytes>>;

/// Routes requests among the balancers' stacks by a table, or sends them all to one.
#[derive(Debug, Clone)]
pub(crate) enum Router<S> {
    /// Every request to one stack: the file without virtual hosts.
    Single(S),
    /// Requests routed by `table` among `lanes` (one stack per balancer); a clone of the
    /// router is two reference counts, the chosen lane is cloned per request.
    Routed {
        table: Arc<RouteTable>,
        lanes: Arc<[S]>,
    },
}

impl<S: Clone> Router<S> {
    /// Every request to `stack`: the file without virtual hosts.
    pub(crate) const fn single(stack: S) -> Self {
        Self::Single(stack)
    }

    /// Requests routed by `table` among `first` (lane 0) and `rest` (lanes 1…; a route to
    /// a lane there is not is answered 404, which the file's check rules out).
    pub(crate) fn new(table: Arc<RouteTable>, first: S, rest: Vec<S>) -> Self {
        let mut lanes = Vec::with_capacity(rest.len() + 1);
        lanes.push(first);
        lanes.extend(rest);
        Self::Routed {
            table,
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
        match self {
            Self::Single(stack) => stack.poll_ready(cx).map_err(Into::into),
            // the lane is known at `call`: its clone is readied there
            Self::Routed { .. } => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self {
            Self::Single(stack) => RouterFuture::direct(stack.call(req)),
            Self::Routed { table, lanes } => route(table, lanes, req),
        }
    }
}

/// The route `req` takes among `lanes`, as a future.
fn route<S, B>(table: &RouteTable, lanes: &[S], mut req: Request<B>) -> RouterFuture<S, B>
where
    S: Service<Request<B>> + Clone,
{
    if let Err(why) = normalized(&mut req) {
        tracing::debug!(%why, "request path refused");
        return RouterFuture::answer(text(StatusCode::BAD_REQUEST));
    }
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
            let target = redirect_target(to, route.remainder(req.uri().path()), req.uri().query());
            let Ok(location) = HeaderValue::try_from(target) else {
                return RouterFuture::answer(text(StatusCode::BAD_REQUEST));
            };
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = *status;
            res.headers_mut().insert(header::LOCATION, location);
            RouterFuture::answer(res)
        }
        Action::Balancer { lane, rewrite } => {
            let Some(stack) = lanes.get(*lane) else {
                return RouterFuture::answer(text(StatusCode::NOT_FOUND));
            };
            let inner = rewrite
                .as_ref()
                .map(|with| (with.clone(), route.prefix().to_owned()));
            // the client's own host goes into rewritten URLs only when a host names it
            let named = super::table::request_host(&req).is_some_and(|h| table.names(h));
            let public = table.public.as_ref().filter(|_| named);
            let reverse = PathReverse::for_request(&req, inner, public);
            if let Some(with) = rewrite {
                let Some(uri) = rewrite_uri(req.uri(), route.prefix(), with) else {
                    return RouterFuture::answer(text(StatusCode::BAD_REQUEST));
                };
                *req.uri_mut() = uri;
            }
            RouterFuture::lane(stack.clone().oneshot(req), reverse)
        }
    }
}

/// Puts the normalised path in `req` (see [`normalize`]); refuses a request whose
/// `:authority` and `Host` name different hosts (RFC 9113, 8.3.1), as routing would follow one
/// and a member perhaps the other.
fn normalized<B>(req: &mut Request<B>) -> Result<(), String> {
    if let (Some(a), Some(h)) = (req.uri().authority(), req.headers().get(header::HOST)) {
        let host = h.to_str().map(super::table::strip_port).unwrap_or_default();
        if !a.host().eq_ignore_ascii_case(host) {
            return Err("the authority and Host disagree".into());
        }
    }
    let path = match normalize(req.uri().path()).map_err(|e| e.to_string())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(p) => p,
    };
    let uri = rewrite_uri(req.uri(), req.uri().path(), &path).ok_or("not a path")?;
    *req.uri_mut() = uri;
    Ok(())
}

/// Apache's `Redirect`: the target, then the rest of the path after the route's prefix,
/// then the query. The rest can never change the target's host: it is joined with a `/`
/// after a target's authority, and a relative target never starts with `//`.
fn redirect_target(to: &str, rest: &str, query: Option<&str>) -> String {
    let authority_only = to
        .split_once("://")
        .is_some_and(|(_, after)| !after.contains('/'));
    let mut target = if authority_only && !rest.is_empty() && !rest.starts_with('/') {
        format!("{to}/{rest}")
    } else {
        join(to, rest)
    };
    if !target.contains("://") {
        let trimmed = target.trim_start_matches('/');
        target = format!("/{trimmed}");
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    target
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

#[cfg(test)]
mod tests {
    use super::redirect_target;

    #[test]
    fn the_rest_of_the_path_never_moves_a_redirect_off_its_host() {
        let t = |to, rest, q| redirect_target(to, rest, q);
        assert_eq!(
            t("https://new.example.com", "", None),
            "https://new.example.com"
        );
        assert_eq!(
            t("https://new.example.com", "/x", Some("a=1")),
            "https://new.example.com/x?a=1"
        );
        assert_eq!(
            t("https://new.example.com", "x", None),
            "https://new.example.com/x"
        );
        assert_eq!(t("https://n.test/a/", "/b", None), "https://n.test/a/b");
        assert_eq!(t("/", "/evil.com", None), "/evil.com");
        assert_eq!(t("/", "", None), "/");
        assert_eq!(t("/v1", "/x", Some("y")), "/v1/x?y");
    }
}
