//! A request-rate limit per client, answered 429.
//!
//! Why per client and keyed on the real address: tower's `RateLimit` limits a whole service,
//! so one client's flood would refuse everybody; per client, the flood is refused and the
//! others are served (nginx `limit_req`, HAProxy's stick tables, Envoy's local rate limit
//! by descriptor). Behind a CDN every connection comes from the CDN, so the key is the
//! client [`real_client`] finds under the trusted-proxy rules.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_balancer::client::ClientAddr;
use tower_balancer::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use super::client_key::ClientKey;
use super::rate_table::RateTable;
use crate::hygiene::{real_client, TrustedProxies};

/// The default most clients remembered at once (a few MiB).
pub const DEFAULT_CLIENT_TABLE: usize = 65_536;

/// A request was over its client's rate: answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client is over its request rate; next request allowed in {retry_after:?}")]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    /// How long until the client's next request would pass.
    #[must_use]
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// A request rate per client: `per_second` on average, up to `burst` at once, for at most
/// `clients` clients remembered at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientRate {
    per_second: f64,
    burst: u32,
    clients: usize,
}

impl ClientRate {
    /// `per_second` requests a second for each client (non-finite or not above 0 is read
    /// as 1), with a burst of the same number (at least 1).
    #[must_use]
    pub fn new(per_second: f64) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let burst = per_second.ceil().min(f64::from(u32::MAX)) as u32;
        Self {
            per_second,
            burst: burst.max(1),
            clients: DEFAULT_CLIENT_TABLE,
        }
    }

    /// How many requests a client may send at once before the rate applies (at least 1).
    #[must_use]
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = if burst == 0 { 1 } else { burst };
        self
    }

    /// The most clients remembered at once ([`DEFAULT_CLIENT_TABLE`]); past it, clients whose
    /// budget is full again are forgotten first, then any, which only gives one a fresh
    /// budget.
    #[must_use]
    pub const fn clients(mut self, clients: usize) -> Self {
        self.clients = if clients == 0 { 1 } else { clients };
        self
    }
}

/// Refuses a client's requests past its [`ClientRate`] with [`RateLimited`] (429 from the
/// crate's server and [`StatusOnErrorLayer`](crate::serve::StatusOnErrorLayer)). Requests
/// without a [`ClientAddr`] pass: there is nobody to count them against.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::convert::Infallible;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_balancer::client::ClientAddr;
/// use tower_balancer_proxy::hygiene::TrustedProxies;
/// use tower_balancer_proxy::limits::{ClientRate, ClientRateLimitLayer, RateLimited};
///
/// let svc = ServiceBuilder::new()
///     .layer(ClientRateLimitLayer::new(ClientRate::new(10.0).burst(2), TrustedProxies::none()))
///     .service(service_fn(|_: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) }));
/// let req = || {
///     let mut r = http::Request::new(());
///     r.extensions_mut().insert(ClientAddr("203.0.113.7:4000".parse().unwrap()));
///     r
/// };
/// assert!(svc.clone().oneshot(req()).await.is_ok());
/// assert!(svc.clone().oneshot(req()).await.is_ok());
/// let e = svc.oneshot(req()).await.unwrap_err();
/// assert!(e.downcast_ref::<RateLimited>().is_some());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientRateLimitLayer {
    /// `None`: no limit (the file's stack keeps one type with the limit on or off, and a
    /// limit that is off costs one branch, not a wrapper around every response body).
    table: Option<Arc<RateTable>>,
    trusted: Arc<TrustedProxies>,
}

impl ClientRateLimitLayer {
    /// Limits each client to `rate`; `trusted` proxies' `X-Forwarded-For` names the client.
    #[must_use]
    pub fn new(rate: ClientRate, trusted: TrustedProxies) -> Self {
        Self {
            table: Some(Arc::new(RateTable::new(
                rate.per_second,
                rate.burst,
                rate.clients,
            ))),
            trusted: Arc::new(trusted),
        }
    }

    /// No limit: every request passes.
    pub(crate) fn off() -> Self {
        Self {
            table: None,
            trusted: Arc::new(TrustedProxies::none()),
        }
    }
}

impl<S> Layer<S> for ClientRateLimitLayer {
    type Service = ClientRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientRateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`ClientRateLimitLayer`].
#[derive(Debug, Clone)]
pub struct ClientRateLimit<S> {
    inner: S,
    layer: ClientRateLimitLayer,
}

impl<S, B> Service<Request<B>> for ClientRateLimit<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let table = self.layer.table.as_ref();
        if let (Some(table), Some(peer)) = (table, req.extensions().get::<ClientAddr>()) {
            let client = real_client(peer.0.ip(), req.headers(), &self.layer.trusted);
            if let Err(retry_after) = table.take(ClientKey::of(client), Instant::now()) {
                tracing::debug!(%client, ?retry_after, "client over its request rate");
                return ResponseFuture {
                    kind: Kind::Limited {
                        error: Some(RateLimited { retry_after }),
                    },
                };
            }
        }
        ResponseFuture {
            kind: Kind::Inner {
                fut: self.inner.call(req),
            },
        }
    }
}

pin_project! {
    /// Response future of [`ClientRateLimit`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] fut: F },
        Limited { error: Option<RateLimited> },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            KindProj::Limited { error } => Poll::Ready(Err(error.take().map_or_else(
                || BoxError::from("rate-limited response polled after completion"),
                |e| Box::new(e) as BoxError,
            ))),
        }
    }
}
