//! The sticky layer's configuration.

use std::sync::Arc;

use tower_layer::Layer;

use super::config::StickyConfig;
use super::service::Sticky;
use crate::registry::Registry;

/// Keeps each session on its member: reads the route a request carries (URL, the balancer's
/// cookie, the application's session id), pins the request to that member when it is
/// registered, and sets the balancer's cookie when the member that served differs.
///
/// Place it outside failover, which sits outside balance; this is the whole stack:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_balancer::BoxError> {
/// use bytes::Bytes;
/// use http::{header, Request, Response};
/// use http_body_util::Full;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_balancer::balance::{BalanceLayer, Picked, RequestBody};
/// use tower_balancer::failover::{FailoverConfig, FailoverLayer, ReplayBody};
/// use tower_balancer::registry::{MemberId, MemberSpec, Registry};
/// use tower_balancer::sticky::{StickyConfig, StickyLayer};
/// use tower_balancer::strategy::RoundRobin;
///
/// let registry = Registry::new();
/// registry.insert(MemberSpec::new(MemberId::new("node1")?, "https://abc.com:9443".parse()?))?;
/// registry.insert(MemberSpec::new(MemberId::new("node2")?, "https://xyz.com:9444".parse()?))?;
/// let forward = service_fn(|req: Request<RequestBody<ReplayBody<Full<Bytes>>>>| async move {
///     let member = req.extensions().get::<Picked>().unwrap().0.clone();
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(member.id().to_string()))))
/// });
/// let svc = ServiceBuilder::new()
///     .layer(StickyLayer::new(registry.clone(), StickyConfig::builder().build()?))
///     .layer(FailoverLayer::new(registry.clone(), FailoverConfig::default()))
///     .layer(BalanceLayer::new(registry.clone(), RoundRobin::new()))
///     .service(forward);
///
/// // The first response sets the balancer's cookie...
/// let res = svc.clone().oneshot(Request::new(Full::new(Bytes::new()))).await?;
/// let cookie = res.headers()[header::SET_COOKIE].to_str()?.split(';').next().unwrap().to_owned();
/// // ...and every request that carries it lands on the same member, without a new cookie.
/// for _ in 0..3 {
///     let req = Request::builder().header(header::COOKIE, &cookie).body(Full::new(Bytes::new()))?;
///     let res = svc.clone().oneshot(req).await?;
///     assert!(res.headers().get(header::SET_COOKIE).is_none());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StickyLayer {
    registry: Registry,
    config: Arc<StickyConfig>,
}

impl StickyLayer {
    /// Sticky sessions over `registry` with `config`. The registry builds the route tokens
    /// of its members whenever it changes, from now on (never on a request).
    #[must_use]
    pub fn new(registry: Registry, config: StickyConfig) -> Self {
        config.codec.attach(&registry);
        Self {
            registry,
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for StickyLayer {
    type Service = Sticky<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Sticky::new(inner, self.registry.clone(), self.config.clone())
    }
}
