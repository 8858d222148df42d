//! The forwarding response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Response;
use hyper::body::Incoming;
use hyper_util::client::legacy::ResponseFuture as ClientFuture;
use pin_project_lite::pin_project;
use tower_balancer::upstream::UpstreamError;

use super::error::upstream;
use super::service::Shared;

pin_project! {
    /// Response future of [`Forward`](super::Forward).
    pub struct ResponseFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Failed { error: Option<UpstreamError> },
        Pending {
            #[pin]
            inner: ClientFuture,
            shared: Arc<Shared>,
        },
    }
}

impl ResponseFuture {
    pub(crate) fn failed(error: UpstreamError) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }

    pub(crate) fn pending(inner: ClientFuture, shared: Arc<Shared>) -> Self {
        Self {
            kind: Kind::Pending { inner, shared },
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Incoming>, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                UpstreamError::from_kind(tower_balancer::upstream::UpstreamErrorKind::Protocol)
            }))),
            KindProj::Pending { inner, shared } => {
                let mut res = ready!(inner.poll(cx)).map_err(upstream)?;
                shared.finish(&mut res);
                Poll::Ready(Ok(res))
            }
        }
    }
}
