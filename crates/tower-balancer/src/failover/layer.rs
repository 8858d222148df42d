//! The failover layer's configuration.

use std::sync::Arc;

use tower_layer::Layer;

use super::policy::FailoverConfig;
use super::service::Failover;
use crate::registry::Registry;

/// Retries a failed attempt on another member: connect failures for every method, failures
/// after the request may have been sent only for idempotent methods, replaying the request
/// body, under a retry budget.
///
/// Place it between sticky and balance; the balance layer picks a member not tried yet for
/// each attempt.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_balancer::BoxError> {
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_balancer::balance::{BalanceLayer, Picked, RequestBody};
/// use tower_balancer::failover::{FailoverConfig, FailoverLayer, ReplayBody};
/// use tower_balancer::registry::{MemberId, MemberSpec, Registry};
/// use tower_balancer::strategy::RoundRobin;
/// use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
///
/// let registry = Registry::new();
/// registry.insert(MemberSpec::new(MemberId::new("node1")?, "https://abc.com:9443".parse()?))?;
/// registry.insert(MemberSpec::new(MemberId::new("node2")?, "https://xyz.com:9444".parse()?))?;
/// // node1 refuses connections; node2 echoes the body it received
/// type Body = RequestBody<ReplayBody<Full<Bytes>>>;
/// let forward = service_fn(|req: Request<Body>| async move {
///     let member = req.extensions().get::<Picked>().unwrap().0.clone();
///     if member.id().as_str() == "node1" {
///         return Err(UpstreamError::from_kind(UpstreamErrorKind::Connect));
///     }
///     let body = req.into_body().collect().await.map_err(|e| UpstreamError::new(UpstreamErrorKind::ClientBody, e))?;
///     Ok(Response::new(Full::new(body.to_bytes())))
/// });
/// let svc = ServiceBuilder::new()
///     .layer(FailoverLayer::new(registry.clone(), FailoverConfig::default()))
///     .layer(BalanceLayer::new(registry.clone(), RoundRobin::new()))
///     .service(forward);
///
/// for _ in 0..4 {
///     let req = Request::post("/login").body(Full::new(Bytes::from_static(b"user=admin")))?;
///     let res = svc.clone().oneshot(req).await?;
///     assert_eq!(res.into_body().collect().await?.to_bytes(), "user=admin");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FailoverLayer {
    registry: Registry,
    config: Arc<FailoverConfig>,
}

impl FailoverLayer {
    /// Failover over `registry`'s members with `config`.
    #[must_use]
    pub fn new(registry: Registry, config: FailoverConfig) -> Self {
        Self {
            registry,
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for FailoverLayer {
    type Service = Failover<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Failover::new(inner, self.registry.clone(), self.config.clone())
    }
}
