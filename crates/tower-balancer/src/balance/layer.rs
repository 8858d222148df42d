//! The balance layer's configuration.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::key::HashKey;
use super::queue::QueueSettings;
use super::service::{Balance, BalanceParts, OutcomeSink};
use super::status::FailureStatuses;
use crate::outcome::OutcomeObserver;
use crate::registry::Registry;
use crate::strategy::{Picker, Strategy};

/// Picks a member of `registry` with `strategy` for every request and hands the request to the
/// inner (per-member) service with the pick in its extensions.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_balancer::BoxError> {
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_balancer::balance::{BalanceLayer, Picked, ServedBy};
/// use tower_balancer::registry::{MemberId, MemberSpec, Registry};
/// use tower_balancer::strategy::RoundRobin;
///
/// let registry = Registry::new();
/// registry.insert(MemberSpec::new(MemberId::new("node1")?, "https://abc.com:9443".parse()?))?;
/// registry.insert(MemberSpec::new(MemberId::new("node2")?, "https://xyz.com:9444".parse()?))?;
///
/// // The innermost service would forward to `Picked`'s endpoint; this one just names it.
/// let forward = service_fn(|req: Request<_>| async move {
///     let member = req.extensions().get::<Picked>().unwrap().0.clone();
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(member.id().to_string()))))
/// });
///
/// let svc = ServiceBuilder::new()
///     .layer(BalanceLayer::new(registry.clone(), RoundRobin::new()))
///     .service(forward);
///
/// let res = svc.clone().oneshot(Request::new(Full::new(Bytes::new()))).await?;
/// let first = res.extensions().get::<ServedBy>().unwrap().0.id().clone();
/// let res = svc.oneshot(Request::new(Full::new(Bytes::new()))).await?;
/// let second = res.extensions().get::<ServedBy>().unwrap().0.id().clone();
/// assert_ne!(first, second);
/// # Ok(()) }
/// ```
pub struct BalanceLayer<S> {
    registry: Registry,
    picker: Picker<S>,
    key: Option<Arc<dyn HashKey>>,
    observer: Option<Arc<dyn OutcomeObserver>>,
    failure_statuses: FailureStatuses,
    queue: QueueSettings,
}

impl<S> Clone for BalanceLayer<S> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            picker: self.picker.clone(),
            key: self.key.clone(),
            observer: self.observer.clone(),
            failure_statuses: self.failure_statuses,
            queue: self.queue,
        }
    }
}

impl<S: Strategy> fmt::Debug for BalanceLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceLayer")
            .field("strategy", &self.picker.strategy().name())
            .field("hash_key", &self.key.is_some())
            .field("observer", &self.observer.is_some())
            .field("failure_statuses", &self.failure_statuses)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl<S: Strategy> BalanceLayer<S> {
    /// Balances over `registry` with `strategy`. Attaches the strategy to the registry (the
    /// registry builds its tables from now on), so this is not a `const fn`.
    pub fn new(registry: Registry, strategy: S) -> Self {
        let picker = Picker::new(&registry, strategy);
        Self {
            registry,
            picker,
            key: None,
            observer: None,
            failure_statuses: FailureStatuses::default(),
            queue: QueueSettings::new(),
        }
    }

    /// Sets how many requests may wait for a member with room, and for how long, when
    /// members have a [`max_in_flight`](crate::registry::MemberSpec::max_in_flight)
    /// (default [`QueueSettings::new`]: 1024 requests, 10 s each).
    #[must_use]
    pub const fn queue(mut self, queue: QueueSettings) -> Self {
        self.queue = queue;
        self
    }

    /// Computes each request's hash key for consistent-hash strategies.
    #[must_use]
    pub fn hash_key(mut self, key: impl HashKey) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Tells `observer` the outcome of every attempt (passive health plugs in here).
    #[must_use]
    pub fn observer(mut self, observer: impl OutcomeObserver) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Sets which response statuses count against a member (default: 502, 503 and 504, see
    /// [`FailureStatuses`]).
    #[must_use]
    pub const fn failure_statuses(mut self, statuses: FailureStatuses) -> Self {
        self.failure_statuses = statuses;
        self
    }

    /// The registry balanced over.
    #[must_use]
    pub const fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The attached strategy.
    #[must_use]
    pub fn strategy(&self) -> &S {
        self.picker.strategy()
    }
}

impl<S, I> Layer<I> for BalanceLayer<S> {
    type Service = Balance<I, S>;

    fn layer(&self, inner: I) -> Self::Service {
        Balance::from_shared(
            inner,
            Arc::new(BalanceParts {
                registry: self.registry.clone(),
                picker: self.picker.clone(),
                key: self.key.clone(),
                queue: self.queue,
                report: Arc::new(OutcomeSink {
                    observer: self.observer.clone(),
                    failure_statuses: self.failure_statuses,
                }),
            }),
        )
    }
}
