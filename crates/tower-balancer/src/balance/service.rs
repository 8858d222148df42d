//! The balance service: pick, account, call.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::error::BalanceError;
use super::extensions::{AttemptTimeout, Picked, PinnedRoute, RequestKey};
use super::future::ResponseFuture;
use super::key::HashKey;
use super::layer::BalanceLayer;
use super::status::FailureStatuses;
use crate::outcome::{Outcome, OutcomeObserver};
use crate::registry::{InFlight, Member, Registry};
use crate::strategy::{PickContext, Picker, Strategy, Tried};
use crate::BoxError;

/// The service made by [`BalanceLayer`]. Cheap to clone, and ready whenever the inner
/// service is: "no eligible member" is answered from the response future, never by holding
/// back readiness.
pub struct Balance<I, S> {
    inner: I,
    shared: Arc<BalanceParts<S>>,
}

pub(crate) struct BalanceParts<S> {
    pub(crate) registry: Registry,
    pub(crate) picker: Picker<S>,
    pub(crate) key: Option<Arc<dyn HashKey>>,
    pub(crate) report: Arc<OutcomeSink>,
}

/// Where outcomes go; shared with every response future.
pub(crate) struct OutcomeSink {
    pub(crate) observer: Option<Arc<dyn OutcomeObserver>>,
    pub(crate) failure_statuses: FailureStatuses,
}

impl OutcomeSink {
    pub(crate) fn record(&self, member: &Arc<Member>, outcome: &Outcome) {
        member.stats().record(outcome);
        if let Outcome::Failure { kind, .. } = outcome {
            tracing::debug!(member = %member.id(), failure = %kind, "attempt failed");
        }
        if let Some(o) = &self.observer {
            o.observe(member, outcome);
        }
    }
}

impl<I: Clone, S> Clone for Balance<I, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<I: fmt::Debug, S: Strategy> fmt::Debug for Balance<I, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("inner", &self.inner)
            .field("strategy", &self.shared.picker.strategy().name())
            .finish_non_exhaustive()
    }
}

impl<I, S> Balance<I, S> {
    pub(crate) fn from_shared(inner: I, shared: Arc<BalanceParts<S>>) -> Self {
        Self { inner, shared }
    }

    /// Wraps `inner` with `layer`'s settings.
    pub fn layer(layer: &BalanceLayer<S>, inner: I) -> Self {
        tower_layer::Layer::layer(layer, inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut I {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> I {
        self.inner
    }

    /// The registry balanced over.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }
}

impl<I, S: Strategy> Balance<I, S> {
    /// The member for this request: its pinned route if that member can serve, else the
    /// strategy's pick among members not tried yet.
    fn choose<B>(&self, req: &Request<B>) -> Result<Arc<Member>, BalanceError> {
        let shared = &*self.shared;
        let snapshot = shared.registry.load();
        let empty = Tried::new();
        let tried = req.extensions().get::<Tried>().unwrap_or(&empty);
        if let Some(pin) = req.extensions().get::<PinnedRoute>() {
            let usable = |m: &&Arc<Member>| m.serves_pinned() && !tried.contains(m);
            let pinned = snapshot.get(pin.route().as_str());
            // the member itself, else its redirect route (Apache `redirect=`), one hop only
            let chosen = pinned.filter(usable).or_else(|| {
                let redirect = pinned?.redirect()?;
                snapshot.get(redirect.as_str()).filter(usable)
            });
            match chosen {
                Some(m) => {
                    if !tried.is_empty() {
                        m.stats().metrics().note_retry();
                    }
                    tracing::debug!(member = %m.id(), pinned = true, "member picked");
                    return Ok(m.clone());
                }
                None if pin.is_strict() => {
                    return Err(BalanceError::PinnedUnavailable(pin.route().clone()))
                }
                None => {}
            }
        }
        let key = match req.extensions().get::<RequestKey>() {
            Some(k) => Some(k.0),
            None => shared
                .key
                .as_ref()
                .and_then(|k| k.key(req.method(), req.uri(), req.headers())),
        };
        let cx = PickContext::new(key, tried);
        let picked = shared.picker.pick(&snapshot, &cx)?;
        if !tried.is_empty() {
            picked.stats().metrics().note_retry();
        }
        tracing::debug!(member = %picked.id(), tried = tried.len(), "member picked");
        Ok(picked.clone())
    }
}

impl<I, S, B, RB> Service<Request<B>> for Balance<I, S>
where
    I: Service<Request<RequestBody<B>>, Response = Response<RB>>,
    I::Error: Into<BoxError>,
    S: Strategy,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<I::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let member = match self.choose(&req) {
            Ok(m) => m,
            Err(e) => return ResponseFuture::failed(e),
        };
        let in_flight = InFlight::start(member.clone());
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(Picked(member.clone()));
        let req = Request::from_parts(parts, RequestBody::new(body, member));
        let timeout = req.extensions().get::<AttemptTimeout>().map(|t| t.0);
        let started = Instant::now();
        let fut = self.inner.call(req);
        ResponseFuture::attempt(fut, in_flight, started, timeout, self.shared.report.clone())
    }
}
