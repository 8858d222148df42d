//! The names a gateway needs, in one `use`: `use tower_balancer_proxy::prelude::*;`.

pub use crate::forward::{ForwardConfig, UpstreamTls};
pub use crate::manager::ManagerService;
pub use crate::proxy::{Proxy, ProxyBuilder, ProxyService};
pub use crate::serve::{ServeConfig, Server};
pub use tower_balancer::failover::FailoverConfig;
pub use tower_balancer::health::{OutlierConfig, ProbeSettings};
pub use tower_balancer::registry::{MemberId, MemberSpec, Registry};
pub use tower_balancer::sticky::{RouteKeys, StickyConfig};
pub use tower_balancer::strategy::{LeastOutstanding, Maglev, PowerOfTwo, RoundRobin};
pub use tower_balancer::BoxError;
