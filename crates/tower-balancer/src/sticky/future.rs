//! The sticky layer's response future: sets the cookie when the member changed, or when the
//! client's cookie was signed with an older key (so a key rotation moves live sessions to
//! the new key while the old one is still accepted).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::SET_COOKIE;
use http::Response;
use pin_project_lite::pin_project;

use super::config::StickyConfig;
use super::extensions::RouteChanged;
use crate::balance::ServedBy;
use crate::registry::{MemberId, Registry};

pin_project! {
    /// Response future of [`Sticky`](super::Sticky).
    pub struct ResponseFuture<F> {
        #[pin]
        pub(crate) inner: F,
        // the route the request carried, if any
        pub(crate) carried: Option<MemberId>,
        // whether the carried cookie was signed with an older key
        pub(crate) resign: bool,
        // whether the client came over TLS (the cookie's `Secure`)
        pub(crate) tls: bool,
        pub(crate) registry: Registry,
        pub(crate) config: Arc<StickyConfig>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("carried", &self.carried)
            .finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let Some(served) = res.extensions().get::<ServedBy>().map(|s| s.0.id().clone()) else {
            return Poll::Ready(Ok(res));
        };
        let same = this.carried.as_ref() == Some(&served);
        if same && !*this.resign {
            return Poll::Ready(Ok(res));
        }
        if let Some(v) = this
            .config
            .codec
            .set_cookie(&served, &this.registry.load(), *this.tls)
        {
            res.headers_mut().append(SET_COOKIE, v);
        }
        // a re-signed cookie names the same member: no route change to report
        if let Some(from) = this.carried.take().filter(|_| !same) {
            tracing::debug!(from = %from, to = %served, "sticky route changed");
            res.extensions_mut()
                .insert(RouteChanged { from, to: served });
        }
        Poll::Ready(Ok(res))
    }
}
