//! The balance service: pick, account, call.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::error::BalanceError;
use super::extensions::{AttemptTimeout, Picked, PinnedRoute, RequestKey, SentTo, UploadProgress};
use super::future::AttemptLimit;
use super::future::ResponseFuture;
use super::key::HashKey;
use super::layer::BalanceLayer;
use super::queue::QueueSettings;
use super::status::FailureStatuses;
use super::waiting::Waiting;
use crate::outcome::{Outcome, OutcomeObserver};
use crate::registry::{InFlight, Member, Registry, Waiter};
use crate::strategy::{PickContext, PickError, Picker, Strategy, Tried};
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
    pub(crate) queue: QueueSettings,
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

    /// An answer's head arrived and its body is still to come: counted as a success for
    /// the observer, with the member's failure streak left for the body to settle.
    pub(crate) fn record_head(&self, member: &Arc<Member>, latency: std::time::Duration) {
        member.stats().record_head(latency);
        if let Some(o) = &self.observer {
            o.observe(member, &Outcome::Success { latency });
        }
    }

    /// An answer's body (its head recorded by [`record_head`](Self::record_head)) broke off:
    /// a failure of the member, told to the observer, which may eject it.
    pub(crate) fn body_failed(&self, member: &Arc<Member>) {
        let kind = crate::outcome::FailureKind::Reset;
        member.stats().body_failed(kind);
        tracing::debug!(member = %member.id(), failure = %kind, "answer body failed");
        if let Some(o) = &self.observer {
            o.observe(
                member,
                &Outcome::Failure {
                    kind,
                    latency: None,
                },
            );
        }
    }
}

impl fmt::Debug for OutcomeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutcomeSink")
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
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

/// Why [`Balance::choose`] found no member to send to now.
enum NotNow {
    /// Members could take it but are full: wait for the pinned member (its serial) or any.
    Busy(Option<u64>),
    Failed(BalanceError),
}

impl<I, S: Strategy> Balance<I, S> {
    /// The member for this request, with its slot counted: its pinned route if that member
    /// can serve, else the strategy's pick among members not tried yet and not full.
    fn choose<B>(&self, req: &Request<B>) -> Result<InFlight, NotNow> {
        let shared = &*self.shared;
        let snapshot = shared.registry.load();
        let empty = Tried::new();
        let tried = req.extensions().get::<Tried>().unwrap_or(&empty);
        if let Some(pin) = req.extensions().get::<PinnedRoute>() {
            // in panic mode every member is tried whatever its health (a probe's first
            // verdict not in yet, or all of them failing): a pinned one too, where its
            // session lives, rather than one picked for it
            let panic = snapshot.is_panic();
            let usable = |m: &&Arc<Member>| {
                (m.serves_pinned() || (panic && m.serves_pinned_in_panic())) && !tried.contains(m)
            };
            let pinned = snapshot.get(pin.route().as_str());
            // the member itself, else its redirect route (Apache `redirect=`), one hop only
            let chosen = pinned.filter(usable).or_else(|| {
                let redirect = pinned?.redirect()?;
                snapshot.get(redirect.as_str()).filter(usable)
            });
            match chosen {
                Some(m) => {
                    // a full pinned member is waited for: the session lives there
                    let slot =
                        InFlight::try_start(m.clone()).ok_or(NotNow::Busy(Some(m.serial())))?;
                    if !tried.is_empty() {
                        m.stats().metrics().note_retry();
                    }
                    tracing::debug!(member = %m.id(), pinned = true, "member picked");
                    return Ok(slot);
                }
                None if pin.is_strict() => {
                    return Err(NotNow::Failed(BalanceError::PinnedUnavailable(
                        pin.route().clone(),
                    )))
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
        let cx = PickContext::new(key, tried).with_limits(snapshot.has_limits());
        let picked = match shared.picker.pick(&snapshot, &cx) {
            Ok(m) => m,
            Err(PickError::Busy) => return Err(NotNow::Busy(None)),
            Err(e) => return Err(NotNow::Failed(e.into())),
        };
        // full since the pick looked (another thread took the last slot): wait
        let slot = InFlight::try_start(picked.clone()).ok_or(NotNow::Busy(None))?;
        if !tried.is_empty() {
            picked.stats().metrics().note_retry();
        }
        tracing::debug!(member = %picked.id(), tried = tried.len(), "member picked");
        Ok(slot)
    }
}

impl<I, S: Strategy> Balance<I, S> {
    /// Waits in the queue for a member with room, or says why not.
    #[cold]
    #[inline(never)]
    fn wait<B, RB>(&mut self, req: Request<B>) -> ResponseFuture<I::Future, Waiting<I, B>>
    where
        I: Service<Request<RequestBody<B>>, Response = Response<RB>> + Clone,
    {
        let registry = self.shared.registry.clone();
        let settings = self.shared.queue;
        let queue = registry.load_stats().queue();
        let mut waiters = queue.lock();
        // again under the queue's lock: room freed since the first look is seen here, and
        // room freed from now on goes to the queue
        let pinned = match self.choose(&req) {
            Ok(slot) => {
                drop(waiters);
                let (fut, started, timeout) = send(&mut self.inner, &slot, req);
                return ResponseFuture::attempt(fut, slot, started, timeout, self.report());
            }
            Err(NotNow::Failed(e)) => return ResponseFuture::failed(e),
            Err(NotNow::Busy(pinned)) => pinned,
        };
        if waiters.len() >= u64::from(settings.length) {
            drop(waiters);
            queue.note_refused();
            return ResponseFuture::failed(BalanceError::QueueFull);
        }
        let tried = req.extensions().get::<Tried>().copied().unwrap_or_default();
        let strict = req
            .extensions()
            .get::<PinnedRoute>()
            .is_some_and(PinnedRoute::is_strict);
        let (tx, rx) = oneshot::channel();
        waiters.push(Waiter::new(pinned, strict, tried, tx));
        drop(waiters);
        tracing::debug!(
            pinned = pinned.is_some(),
            "every member is full: request queued"
        );
        // the ready service goes with the request; a clone takes its place
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::queued(Waiting::new(
            rx,
            settings.timeout,
            ready,
            req,
            registry.clone(),
            self.report(),
        ))
    }

    fn report(&self) -> Arc<OutcomeSink> {
        self.shared.report.clone()
    }
}

/// Sends `req` to `slot`'s member through `inner`: the pick in the request's extensions,
/// its body counted on the member. Returns the call, when it started, and its time limit
/// (with the client's upload, when the request carries one).
pub(crate) fn send<I, B, RB>(
    inner: &mut I,
    slot: &InFlight,
    req: Request<B>,
) -> (I::Future, Instant, Option<AttemptLimit>)
where
    I: Service<Request<RequestBody<B>>, Response = Response<RB>>,
{
    let member = slot.member();
    let (mut parts, body) = req.into_parts();
    if let Some(sent) = parts.extensions.get::<SentTo>() {
        sent.note(member.id());
    }
    parts.extensions.insert(Picked(member.clone()));
    let limit = parts
        .extensions
        .get::<AttemptTimeout>()
        .map(|t| AttemptLimit {
            timeout: t.0,
            upload: parts.extensions.get::<UploadProgress>().cloned(),
        });
    let req = Request::from_parts(parts, RequestBody::new(body, member.clone()));
    let started = Instant::now();
    (inner.call(req), started, limit)
}

impl<I, S, B, RB> Service<Request<B>> for Balance<I, S>
where
    I: Service<Request<RequestBody<B>>, Response = Response<RB>> + Clone,
    I::Error: Into<BoxError>,
    RB: http_body::Body,
    S: Strategy,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<I::Future, Waiting<I, B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.choose(&req) {
            Ok(slot) => {
                let (fut, started, limit) = send(&mut self.inner, &slot, req);
                ResponseFuture::attempt(fut, slot, started, limit, self.report())
            }
            Err(NotNow::Failed(e)) => ResponseFuture::failed(e),
            Err(NotNow::Busy(_)) => self.wait(req),
        }
    }
}
