//! [`ProxyService`]: the built stack behind one type that takes any request body, has
//! `Error = Infallible`, and keeps the proxy's background tasks alive.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;
use tower_balancer::client::ClientTls;
use tower_balancer::BoxError;
use tower_service::Service;

use super::Keepalive;

/// The response body of a [`ProxyService`]: the member's, or a short error page.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The future of a [`ProxyService`] call.
pub type ProxyFuture =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

type Inner = BoxCloneSyncService<Request<ProxyBody>, Response<ProxyBody>, Infallible>;

/// The balancer as one service; see [`Proxy`](super::Proxy).
#[derive(Clone)]
pub struct ProxyService {
    inner: Inner,
    tls: bool,
    _background: Keepalive,
}

impl std::fmt::Debug for ProxyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyService")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ProxyService {
    pub(super) fn new<S, B>(stack: S, tls: bool, background: Keepalive) -> Self
    where
        S: Service<Request<ProxyBody>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let stack =
            stack.map_response(|r: Response<B>| r.map(|b| b.map_err(Into::into).boxed_unsync()));
        Self {
            inner: BoxCloneSyncService::new(stack),
            tls,
            _background: background,
        }
    }
}

impl<B> Service<Request<B>> for ProxyService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // (the forwarder takes the client's address from axum's ConnectInfo itself)
        let mut req = req.map(|b| b.map_err(Into::into).boxed_unsync());
        if self.tls {
            req.extensions_mut().insert(ClientTls);
        }
        self.inner.call(req)
    }
}
