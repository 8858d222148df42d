//! What a built file holds until it binds, in four groups: the front (where and how clients
//! are accepted), the stack (the layers a request goes through), the manager, and the
//! sources that change members (discovery and probes). Keeping them apart keeps
//! [`Gateway`](super::Gateway) small and lets each group be started by its own code. The
//! stack's group ([`StackPlan`](crate::proxy::StackPlan)) is shared with the builder of
//! [`Proxy`](crate::proxy::Proxy).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tracing::Instrument;

use http::Uri;
use tokio::sync::broadcast;
use tower_balancer::discovery::DnsDiscovery;
use tower_balancer::health::{
    HealthEvent, HealthProbe, HealthProbeTask, HttpProbe, ProbeSettings, TcpProbe,
};
use tower_balancer::registry::Registry;

use super::members::MembersFile;
use crate::access_log::{LogFormat, LogTarget};
use crate::forward::ProbeClient;
use crate::manager::ManagerInfo;
use crate::rewrite::ReverseRewrite;
use crate::serve::ServeConfig;

/// Where and how clients are accepted.
#[derive(Debug)]
pub(crate) struct FrontPlan {
    pub(crate) listen: SocketAddr,
    pub(crate) serve: ServeConfig,
    /// `server.workers`: runtimes serving the front (1 when unset).
    pub(crate) workers: Option<usize>,
    /// Where and how requests are logged, when they are.
    pub(crate) access_log: Option<(LogTarget, LogFormat)>,
}

/// The balancer-manager, when one listens.
#[derive(Debug)]
pub(crate) struct ManagerPlan {
    pub(crate) listen: Option<SocketAddr>,
    /// Host names it answers for besides loopback and its own address.
    pub(crate) names: Vec<String>,
}

/// One balancer of the file: its members and what changes them, its layers, its public
/// URL and what the manager says of it.
#[derive(Debug)]
pub(crate) struct LanePlan {
    pub(crate) name: String,
    pub(crate) registry: Registry,
    pub(crate) stack: crate::proxy::StackPlan<super::strategy::ConfiguredStrategy>,
    pub(crate) sources: SourcePlan,
    pub(crate) public: PublicUrl,
    pub(crate) info: ManagerInfo,
    /// The members the file itself declares (not its members file's), as built.
    pub(crate) declared: Vec<tower_balancer::registry::MemberSpec>,
    /// Their ids, shared with the discovery sources, which leave them alone.
    pub(crate) statics: super::owned::Statics,
}

/// The health check a file asked for.
#[derive(Debug, Clone)]
pub(crate) enum ProbeKind {
    /// An HTTP(S) request over the forwarder's own TLS settings.
    Http(Box<HttpProbe<ProbeClient>>, ProbeSettings),
    /// A TCP connect.
    Tcp(ProbeSettings),
}

impl ProbeKind {
    /// Starts probing `registry`'s members.
    pub(crate) fn spawn(
        &self,
        registry: &Registry,
    ) -> (HealthProbeTask, broadcast::Receiver<HealthEvent>) {
        match self {
            Self::Http(p, settings) => {
                let checker = HealthProbe::new(registry.clone(), (**p).clone(), *settings);
                let events = checker.subscribe();
                (checker.spawn(), events)
            }
            Self::Tcp(settings) => {
                let checker = HealthProbe::new(registry.clone(), TcpProbe, *settings);
                let events = checker.subscribe();
                (checker.spawn(), events)
            }
        }
    }
}

impl ProbeKind {
    /// Starts probing again after a reload: members a probe has answered keep the health
    /// they have; with `initial = "down"`, members no probe has answered yet (added by the
    /// reload, or all of them when the reload turned probes on) are down until it does.
    pub(crate) fn spawn_resumed(self, registry: &Registry) -> HealthProbeTask {
        self.spawn(registry).0
    }
}

/// What changes members while the balancer runs: a members file, DNS, etcd, health probes.
#[derive(Debug, Default)]
pub(crate) struct SourcePlan {
    pub(crate) file: Option<MembersFile>,
    pub(crate) dns: Option<DnsDiscovery>,
    pub(crate) etcd: Option<super::etcd::EtcdSource>,
    /// How long a member that left the file, DNS or etcd drains.
    pub(crate) drain: Duration,
    pub(crate) probe: Option<ProbeKind>,
    /// The ramp for members that join or recover.
    pub(crate) slow_start: Option<Duration>,
}

/// A task that stops when its handle is dropped, as the probe task does.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Runs `task` until it ends or the handle is dropped, in the span it was started in
    /// (a balancer's, so its log lines name it).
    pub(crate) fn spawn<F: Future + Send + 'static>(task: F) -> Self {
        Self(tokio::spawn(
            async move {
                task.await;
            }
            .in_current_span(),
        ))
    }
}

impl AbortOnDrop {
    /// Whether the task ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The public URL (what `ProxyPassReverse` rewrites to): from the file, or from the server
/// name and the port actually bound.
#[derive(Debug, Clone)]
pub(crate) struct PublicUrl {
    pub(crate) explicit: Option<Uri>,
    pub(crate) server_name: String,
    pub(crate) tls: bool,
    pub(crate) reverse: bool,
    pub(crate) cookie_domains: Vec<(String, String)>,
    pub(crate) cookie_paths: Vec<(String, String)>,
    /// The URL as it stands: with the configured port until bound, then the bound one.
    pub(crate) current: Uri,
}

impl PublicUrl {
    /// The public URL with the front on `port`.
    pub(crate) fn url(&self, port: u16) -> Result<Uri, String> {
        if let Some(u) = &self.explicit {
            return Ok(u.clone());
        }
        let (scheme, default_port) = if self.tls {
            ("https", 443)
        } else {
            ("http", 80)
        };
        // a server name with its own port (`wso2.com:443`, a port mapped in front) keeps it
        let named_port = self
            .server_name
            .parse::<http::uri::Authority>()
            .ok()
            .and_then(|a| a.port_u16());
        let text = if named_port.is_some() || port == default_port {
            format!("{scheme}://{}", self.server_name)
        } else {
            format!("{scheme}://{}:{port}", self.server_name)
        };
        text.parse()
            .map_err(|_| format!("`{}` is not a host name", self.server_name))
    }

    /// The reverse rewriting for the current URL, when any is configured.
    pub(crate) fn rewrite(&self) -> Option<ReverseRewrite> {
        if !self.reverse && self.cookie_domains.is_empty() && self.cookie_paths.is_empty() {
            return None;
        }
        let mut rewrite = ReverseRewrite::try_new(&self.current).ok()?;
        for (from, to) in &self.cookie_domains {
            rewrite = rewrite.cookie_domain(from, to);
        }
        for (from, to) in &self.cookie_paths {
            rewrite = rewrite.cookie_path(from, to);
        }
        Some(rewrite)
    }
}
