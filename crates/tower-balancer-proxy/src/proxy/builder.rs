//! [`ProxyBuilder`]: every setting has the configuration file's default, so `member` twice
//! and `build` give a safe balancer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use tower_balancer::balance::QueueSettings;
use tower_balancer::failover::FailoverConfig;
use tower_balancer::health::{
    HealthProbe, HttpProbe, OutlierConfig, OutlierDetection, ProbeSettings, TcpProbe,
};
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::sticky::StickyConfig;
use tower_balancer::strategy::{RoundRobin, Strategy};
use tower_balancer::BoxError;

use super::service::ProxyService;
use super::stack::StackPlan;
use super::{Background, Proxy, ProxyError};
use crate::forward::ForwardConfig;
use crate::limits::DEFAULT_BODY_IDLE_TIMEOUT;
use crate::manager::{ManagerInfo, ManagerService};
use crate::metrics::Metrics;

/// Which health check runs.
#[derive(Debug, Clone)]
enum Check {
    /// A TCP connect (the default: finds dead members, assumes nothing of their pages).
    Tcp,
    /// `GET path`, 200–399 is healthy.
    Http(String),
    /// None: members are judged by real requests alone (passive ejection).
    Off,
}

/// Builds a [`Proxy`]: `member` for each member, then [`build`](Self::build).
#[derive(Debug)]
pub struct ProxyBuilder<S = RoundRobin> {
    name: String,
    members: Vec<Result<MemberSpec, ProxyError>>,
    strategy: S,
    hash_key: Option<HeaderName>,
    sticky: Option<StickyConfig>,
    failover: FailoverConfig,
    forward: ForwardConfig,
    check: Check,
    probe: ProbeSettings,
    outliers: Option<OutlierConfig>,
    queue: QueueSettings,
    request_idle: Duration,
    response_idle: Duration,
    assume_tls: bool,
}

impl ProxyBuilder {
    pub(super) fn new() -> Self {
        Self {
            name: "balancer".into(),
            members: Vec::new(),
            strategy: RoundRobin::new(),
            hash_key: None,
            sticky: None,
            failover: FailoverConfig::default(),
            forward: ForwardConfig::new(),
            check: Check::Tcp,
            probe: ProbeSettings::new(),
            outliers: Some(OutlierConfig::new()),
            queue: QueueSettings::new(),
            request_idle: DEFAULT_BODY_IDLE_TIMEOUT,
            response_idle: DEFAULT_BODY_IDLE_TIMEOUT,
            assume_tls: false,
        }
    }
}

impl<S> ProxyBuilder<S> {
    /// A member: its route (the id sessions are pinned by, `node1`) and its URL
    /// (`http://10.0.0.1:9763`). Mistakes are reported by [`build`](Self::build).
    #[must_use]
    pub fn member(mut self, route: &str, url: &str) -> Self {
        let spec = MemberId::new(route)
            .map_err(ProxyError::from)
            .and_then(|id| {
                let bad = || ProxyError::Url {
                    route: route.to_owned(),
                    url: url.to_owned(),
                };
                let uri: Uri = url.parse().map_err(|_| bad())?;
                match (uri.scheme_str(), uri.host()) {
                    (Some("http" | "https"), Some(_)) => Ok(MemberSpec::new(id, uri)),
                    _ => Err(bad()),
                }
            });
        self.members.push(spec);
        self
    }

    /// A member with every setting (weight, priority set, admin state, TLS name).
    #[must_use]
    pub fn member_spec(mut self, spec: MemberSpec) -> Self {
        self.members.push(Ok(spec));
        self
    }

    /// The name the manager page shows (Apache's `balancer://name`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The strategy for requests no session pins (round robin by default).
    #[must_use]
    pub fn strategy<T>(self, strategy: T) -> ProxyBuilder<T> {
        ProxyBuilder {
            name: self.name,
            members: self.members,
            strategy,
            hash_key: self.hash_key,
            sticky: self.sticky,
            failover: self.failover,
            forward: self.forward,
            check: self.check,
            probe: self.probe,
            outliers: self.outliers,
            queue: self.queue,
            request_idle: self.request_idle,
            response_idle: self.response_idle,
            assume_tls: self.assume_tls,
        }
    }

    /// The request header consistent-hashing strategies hash (`x-user`).
    #[must_use]
    pub fn hash_key(mut self, header: HeaderName) -> Self {
        self.hash_key = Some(header);
        self
    }

    /// Sticky settings (default: `JSESSIONID` and a `ROUTEID` cookie signed with a key made
    /// at start; give several instances the same keys with `RouteKeys`).
    #[must_use]
    pub fn sticky(mut self, config: StickyConfig) -> Self {
        self.sticky = Some(config);
        self
    }

    /// Failover settings (default: [`FailoverConfig::default`]).
    #[must_use]
    pub fn failover(mut self, config: FailoverConfig) -> Self {
        self.failover = config;
        self
    }

    /// How members are reached: TLS, timeouts, forwarding headers (default:
    /// [`ForwardConfig::new`]).
    #[must_use]
    pub fn forward(mut self, config: ForwardConfig) -> Self {
        self.forward = config;
        self
    }

    /// Probes `GET path` on every member (200–399 is healthy) instead of a TCP connect.
    #[must_use]
    pub fn health_check(mut self, path: impl Into<String>) -> Self {
        self.check = Check::Http(path.into());
        self
    }

    /// No active probes: members are judged by real requests (passive ejection) alone.
    #[must_use]
    pub fn no_health_check(mut self) -> Self {
        self.check = Check::Off;
        self
    }

    /// Probe timing: interval, timeout, passes and failures in a row.
    #[must_use]
    pub const fn probe_settings(mut self, settings: ProbeSettings) -> Self {
        self.probe = settings;
        self
    }

    /// Passive ejection settings (default: [`OutlierConfig::new`]); `None` turns it off.
    #[must_use]
    pub const fn ejection(mut self, config: Option<OutlierConfig>) -> Self {
        self.outliers = config;
        self
    }

    /// The queue for requests that find every member at its
    /// [`max_in_flight`](MemberSpec::max_in_flight) (default: 1024 requests, 10 s each).
    #[must_use]
    pub const fn queue(mut self, queue: QueueSettings) -> Self {
        self.queue = queue;
        self
    }

    /// How long a client's request body and a member's response body may send nothing
    /// (default 60 s each).
    #[must_use]
    pub const fn body_idle_timeouts(mut self, request: Duration, response: Duration) -> Self {
        self.request_idle = request;
        self.response_idle = response;
        self
    }

    /// Says that every request reaches this service over TLS (a TLS-terminating axum
    /// server), so the route cookie is `Secure` and `X-Forwarded-Proto` is `https`.
    #[must_use]
    pub const fn behind_tls(mut self, tls: bool) -> Self {
        self.assume_tls = tls;
        self
    }
}

impl<S> ProxyBuilder<S>
where
    S: Strategy + Send + Sync + 'static,
{
    /// Builds the proxy and starts its probes and ejection (inside a Tokio runtime).
    ///
    /// # Errors
    /// [`ProxyError`] naming the member or setting refused.
    pub fn build(self) -> Result<Proxy, ProxyError> {
        tokio::runtime::Handle::try_current().map_err(|_| ProxyError::NoRuntime)?;
        let registry = Registry::new();
        if self.members.is_empty() {
            return Err(ProxyError::NoMembers);
        }
        for spec in self.members {
            registry.insert(spec?)?;
        }
        let sticky = match self.sticky {
            Some(s) => s,
            None => StickyConfig::builder().build()?,
        };
        let info = ManagerInfo::new(&self.name)
            .with_strategy(self.strategy.name())
            .describe_sticky(&sticky)
            .describe_failover(&self.failover);
        let metrics = Metrics::new(registry.clone()).failover(&self.failover);
        let manager = ManagerService::new(registry.clone(), info)?.with_metrics(metrics.clone());
        let probe = match &self.check {
            Check::Tcp => Some(HealthProbe::new(registry.clone(), TcpProbe, self.probe).spawn()),
            Check::Http(path) => {
                let client = self.forward.probe_client(&registry)?;
                let probe = HttpProbe::new(client).path(path.as_str());
                Some(HealthProbe::new(registry.clone(), probe, self.probe).spawn())
            }
            Check::Off => None,
        };
        // ejection off is a rule that never fires
        let outlier_config = self.outliers.unwrap_or_else(|| {
            OutlierConfig::new()
                .consecutive_failures(0)
                .consecutive_connect_failures(0)
        });
        let plan = StackPlan {
            sticky,
            failover: self.failover,
            strategy: self.strategy,
            hash_key: self.hash_key,
            outliers: outlier_config,
            queue: self.queue,
            request_idle: self.request_idle,
            response_idle: self.response_idle,
            forward: self.forward,
            access_log: None,
            client_rate: None,
            routes: None,
        };
        let outliers = OutlierDetection::new(registry.clone(), plan.outliers);
        let readmissions = outliers.spawn();
        // errors are already answers (502, 503, 504 with the request's id)
        let stack = plan.stack::<UnsyncBoxBody<Bytes, BoxError>>(&registry, outliers)?;
        let background = Arc::new(Background {
            _probe: probe,
            _readmissions: readmissions,
        });
        let service = ProxyService::new(stack, self.assume_tls, background);
        Ok(Proxy::new(service, registry, manager, metrics))
    }
}
