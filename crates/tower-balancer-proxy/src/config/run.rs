//! A built balancer: bind its ports (so "port in use" is found before anything runs), then
//! serve until shutdown, with probes and the manager beside it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use std::time::Duration;

use http::{HeaderName, Uri};
use tokio::sync::{broadcast, watch};
use tower_balancer::balance::{BalanceLayer, HeaderKey};
use tower_balancer::discovery::DnsDiscovery;
use tower_balancer::failover::{FailoverConfig, FailoverLayer};
use tower_balancer::health::{
    HealthEvent, HealthProbe, HealthProbeTask, HttpProbe, OutlierConfig, OutlierDetection,
    ProbeSettings, TcpProbe,
};
use tower_balancer::registry::Registry;
use tower_balancer::sticky::{StickyConfig, StickyLayer};
use tower_http::timeout::ResponseBodyTimeoutLayer;
use tower_layer::Layer;

use super::members::MembersFile;
use super::strategy::ConfiguredStrategy;
use crate::forward::{ForwardConfig, ProbeClient};
use crate::limits::RequestBodyIdleLayer;
use crate::manager::{BalancerManager, ManagerInfo, NonceError};
use crate::rewrite::ReverseRewrite;
use crate::serve::{ServeConfig, Server};

/// The health check a file asked for.
#[derive(Debug, Clone)]
pub(crate) enum ProbeKind {
    /// An HTTP(S) request over the forwarder's own TLS settings.
    Http(Box<HttpProbe<ProbeClient>>, ProbeSettings),
    /// A TCP connect.
    Tcp(ProbeSettings),
}

/// A balancer built from a file: its registry is live (change members and states through
/// it, or through the manager); [`bind`](Self::bind) opens its ports.
#[derive(Debug)]
pub struct Balancer {
    pub(crate) registry: Registry,
    pub(crate) outliers: OutlierConfig,
    pub(crate) limits: BodyLimits,
    pub(crate) manager_names: Vec<String>,
    pub(crate) listen: SocketAddr,
    pub(crate) manager_listen: Option<SocketAddr>,
    pub(crate) serve: ServeConfig,
    pub(crate) forward: ForwardConfig,
    pub(crate) sticky: StickyConfig,
    pub(crate) failover: FailoverConfig,
    pub(crate) strategy: ConfiguredStrategy,
    pub(crate) hash_key: Option<HeaderName>,
    pub(crate) discovery: DiscoveryPlan,
    pub(crate) probe: Option<ProbeKind>,
    pub(crate) info: ManagerInfo,
    pub(crate) public: Uri,
    pub(crate) plan: PublicUrl,
}

/// The idle limits on bodies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub(crate) request_idle: Duration,
    pub(crate) response_idle: Duration,
}

/// The discovery sources a file asked for, started at bind.
#[derive(Debug, Default)]
pub(crate) struct DiscoveryPlan {
    pub(crate) file: Option<MembersFile>,
    pub(crate) dns: Option<DnsDiscovery>,
    pub(crate) drain: Duration,
}

/// A task that stops when its handle is dropped, as the probe task does.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Runs `task` until it ends or the handle is dropped.
    fn spawn<F: Future + Send + 'static>(task: F) -> Self {
        Self(tokio::spawn(async move {
            task.await;
        }))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How the public URL (what `ProxyPassReverse` rewrites to) is made: from the file, or from
/// the server name and the port actually bound.
#[derive(Debug, Clone)]
pub(crate) struct PublicUrl {
    pub(crate) explicit: Option<Uri>,
    pub(crate) server_name: String,
    pub(crate) tls: bool,
    pub(crate) reverse: bool,
    pub(crate) cookie_domains: Vec<(String, String)>,
    pub(crate) cookie_paths: Vec<(String, String)>,
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
        let text = if port == default_port {
            format!("{scheme}://{}", self.server_name)
        } else {
            format!("{scheme}://{}:{port}", self.server_name)
        };
        text.parse()
            .map_err(|_| format!("`{}` is not a host name", self.server_name))
    }

    /// The reverse rewriting for `public`, when any is configured.
    fn rewrite(&self, public: &Uri) -> Option<ReverseRewrite> {
        if !self.reverse && self.cookie_domains.is_empty() && self.cookie_paths.is_empty() {
            return None;
        }
        let mut rewrite = ReverseRewrite::try_new(public).ok()?;
        for (from, to) in &self.cookie_domains {
            rewrite = rewrite.cookie_domain(from, to);
        }
        for (from, to) in &self.cookie_paths {
            rewrite = rewrite.cookie_path(from, to);
        }
        Some(rewrite)
    }
}

/// A port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The front or the manager port.
    #[error("cannot listen on {addr} for {what}: {source}{hint}", hint = hint(source))]
    Listen {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The manager's nonce could not be made.
    #[error(transparent)]
    Nonce(#[from] NonceError),
    /// The forwarder's TLS settings were refused.
    #[error("the members' TLS settings were refused: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            " (another program uses this port: stop it or choose another address)"
        }
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need privileges: choose a port above 1024 or grant CAP_NET_BIND_SERVICE)"
        }
        _ => "",
    }
}

impl Balancer {
    /// The live member registry.
    #[must_use]
    pub const fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The URL clients use (what `ProxyPassReverse` rewrites to), with the configured port.
    #[must_use]
    pub const fn public_url(&self) -> &Uri {
        &self.public
    }

    /// What the manager page says about this balancer.
    #[must_use]
    pub const fn info(&self) -> &ManagerInfo {
        &self.info
    }

    /// Replaces the front address (a port chosen at run time, say) before binding.
    pub fn set_listen(&mut self, addr: SocketAddr) {
        self.listen = addr;
    }

    /// Replaces the manager's address before binding (`None`: no manager).
    pub fn set_manager_listen(&mut self, addr: Option<SocketAddr>) {
        self.manager_listen = addr;
    }

    /// Opens the front port and the manager's, and starts health probes.
    ///
    /// # Errors
    /// [`BindError`] naming the address that could not be opened and what to do.
    pub async fn bind(mut self) -> Result<Bound, BindError> {
        let front = Server::bind(self.listen, self.serve.clone())
            .await
            .map_err(|source| BindError::Listen {
                what: "the balancer",
                addr: self.listen,
                source,
            })?;
        let port = front.local_addr().map_or(self.listen.port(), |a| a.port());
        if let Ok(public) = self.plan.url(port) {
            self.public = public;
        }
        if let Some(rewrite) = self.plan.rewrite(&self.public) {
            self.forward = self.forward.reverse_rewrite(rewrite);
        }
        let admin =
            match self.manager_listen {
                Some(addr) => Some(Server::bind(addr, ServeConfig::new()).await.map_err(
                    |source| BindError::Listen {
                        what: "the balancer-manager",
                        addr,
                        source,
                    },
                )?),
                None => None,
            };
        if let Some(a) = self.manager_listen.filter(|a| !a.ip().is_loopback()) {
            tracing::warn!(
                addr = %a,
                "the balancer-manager listens beyond loopback and has no authentication: \
                 anyone who reaches it can take members out of service"
            );
        }
        let mut names = self.manager_names.clone();
        if let Some(a) = admin.as_ref().and_then(|a| a.local_addr().ok()) {
            names.push(a.ip().to_string());
        }
        let manager =
            BalancerManager::new(self.registry.clone(), self.info.clone())?.allow_hosts(names);
        let (events, probe_task) = match self.probe.clone() {
            Some(ProbeKind::Http(p, settings)) => {
                let checker = HealthProbe::new(self.registry.clone(), *p, settings);
                (Some(checker.subscribe()), Some(checker.spawn()))
            }
            Some(ProbeKind::Tcp(settings)) => {
                let checker = HealthProbe::new(self.registry.clone(), TcpProbe, settings);
                (Some(checker.subscribe()), Some(checker.spawn()))
            }
            None => (None, None),
        };
        let mut discovery = Vec::new();
        let drain = self.discovery.drain;
        if let Some(file) = self.discovery.file.take() {
            discovery.push(AbortOnDrop::spawn(file.run(&self.registry, drain)));
        }
        if let Some(dns) = self.discovery.dns.take() {
            discovery.push(AbortOnDrop::spawn(dns.run(&self.registry, drain)));
        }
        Ok(Bound {
            balancer: self,
            front,
            admin,
            manager,
            events,
            _probe: probe_task,
            _discovery: discovery,
        })
    }
}

/// A balancer with its ports open and probes running; [`serve`](Self::serve) serves it.
#[derive(Debug)]
pub struct Bound {
    balancer: Balancer,
    front: Server,
    admin: Option<Server>,
    manager: BalancerManager,
    events: Option<broadcast::Receiver<HealthEvent>>,
    _probe: Option<HealthProbeTask>,
    _discovery: Vec<AbortOnDrop>,
}

impl Bound {
    /// The front's address (the port the OS chose for port 0).
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.front.local_addr()
    }

    /// The manager's address, when one is configured.
    #[must_use]
    pub fn manager_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The manager service (also served on the manager port when one is configured).
    #[must_use]
    pub const fn manager(&self) -> &BalancerManager {
        &self.manager
    }

    /// The live member registry.
    #[must_use]
    pub const fn registry(&self) -> &Registry {
        &self.balancer.registry
    }

    /// The URL clients use, with the port actually bound.
    #[must_use]
    pub const fn public_url(&self) -> &Uri {
        &self.balancer.public
    }

    /// Health probe verdicts as they happen (none when probes are off).
    #[must_use]
    pub fn health_events(&self) -> Option<broadcast::Receiver<HealthEvent>> {
        self.events.as_ref().map(broadcast::Receiver::resubscribe)
    }

    /// Serves clients (and the manager) until `shutdown` completes, then finishes in-flight
    /// requests within the graceful timeout. Probes stop when this returns.
    ///
    /// # Errors
    /// [`BindError::Tls`] if the members' TLS settings are refused; server errors otherwise.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), BindError> {
        let b = self.balancer;
        // the stack, outermost first: body idle limit → sticky → failover → balance (with
        // passive ejection) → response body idle limit → forward
        let forward = b.forward.build(b.registry.clone())?;
        let forward = ResponseBodyTimeoutLayer::new(b.limits.response_idle).layer(forward);
        let outliers = OutlierDetection::new(b.registry.clone(), b.outliers);
        let _readmissions = outliers.spawn();
        let mut balance = BalanceLayer::new(b.registry.clone(), b.strategy).observer(outliers);
        if let Some(name) = b.hash_key.clone() {
            balance = balance.hash_key(HeaderKey::new(name));
        }
        let balance = balance.layer(forward);
        let failover = FailoverLayer::new(b.registry.clone(), b.failover).layer(balance);
        let sticky = StickyLayer::new(b.registry.clone(), b.sticky).layer(failover);
        let stack = RequestBodyIdleLayer::new(b.limits.request_idle).layer(sticky);
        let (stop_tx, stop_rx) = watch::channel(false);
        let admin = self.admin.map(|admin| {
            let manager = self.manager.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                admin.serve(manager, stopped).await
            })
        });
        let result = self.front.serve(stack, shutdown).await;
        let _ = stop_tx.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        result.map_err(|source| BindError::Listen {
            what: "the balancer",
            addr: b.listen,
            source,
        })
    }
}
