//! A built balancer and its binding: its ports are opened (so "port in use" is found
//! before anything runs) and its probes, discovery and manager started; [`Bound`] serves.

use std::io;
use std::net::SocketAddr;
use tracing::Instrument;

use http::Uri;
use tower_balancer::health::{HealthEvent, SlowStart};
use tower_balancer::registry::Registry;

use super::bound::{Bound, Tasks};
use super::file::FileConfig;
use super::owned::SourceTask;
use super::plan::{FrontPlan, LanePlan, ManagerPlan};
use super::reloader::Reloader;
use super::workers;
use crate::access_log::AccessLog;
use crate::manager::{ManagerInfo, ManagerService, NonceError};
use crate::metrics::{Metrics, ReloadStats};
use crate::serve::{ServeConfig, Server};

/// A balancer built from a file, ready to bind: its registry is live (change members and
/// states through it, or through the manager); [`bind`](Self::bind) opens its ports.
#[derive(Debug)]
pub struct Gateway {
    pub(crate) front: FrontPlan,
    pub(crate) manager: ManagerPlan,
    /// The balancers, the file's first first (at least one).
    pub(crate) lanes: Vec<LanePlan>,
    /// The file as built (a reload compares the next one with it).
    pub(crate) file: FileConfig,
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
    /// The access log could not be opened.
    #[error("cannot open the access log {target}: {source}")]
    AccessLog {
        /// Where it was to go.
        target: crate::access_log::LogTarget,
        /// Why.
        source: io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start a worker thread: {0}")]
    Worker(#[source] io::Error),
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

impl Gateway {
    /// The live member registry of the (first) balancer.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.lanes[0].registry
    }

    /// The live member registry of the balancer named `name`.
    #[must_use]
    pub fn registry_of(&self, name: &str) -> Option<&Registry> {
        self.lanes
            .iter()
            .find(|l| l.name == name)
            .map(|l| &l.registry)
    }

    /// The URL clients use (what `ProxyPassReverse` rewrites to), with the configured port.
    #[must_use]
    pub fn public_url(&self) -> &Uri {
        &self.lanes[0].public.current
    }

    /// What the manager page says about the (first) balancer.
    #[must_use]
    pub fn info(&self) -> &ManagerInfo {
        &self.lanes[0].info
    }

    /// Replaces the front address (a port chosen at run time, say) before binding.
    pub fn set_listen(&mut self, addr: SocketAddr) {
        self.front.listen = addr;
    }

    /// Replaces the manager's address before binding (`None`: no manager).
    pub fn set_manager_listen(&mut self, addr: Option<SocketAddr>) {
        self.manager.listen = addr;
    }

    /// Opens the front port and the manager's, and starts health probes and discovery.
    ///
    /// # Errors
    /// [`BindError`] naming the address that could not be opened and what to do.
    pub async fn bind(mut self) -> Result<Bound, BindError> {
        // the cap is the process's: the workers share its places (`Server::serve`)
        let workers = self.workers();
        let (front, extra) = self.open_front(workers).await?;
        let access_log = match self.front.access_log.clone() {
            Some((target, format)) => {
                let (log, writer) =
                    AccessLog::start(&target, format).map_err(|source| BindError::AccessLog {
                        target: target.clone(),
                        source,
                    })?;
                self.lanes[0].stack.access_log = Some(log.clone());
                Some((target, format, log, writer))
            }
            None => None,
        };
        let port = front
            .local_addr()
            .map_or(self.front.listen.port(), |a| a.port());
        for lane in &mut self.lanes {
            lane.bound_to(port);
        }
        let reloads = ReloadStats::new();
        let (admin, manager) = self.open_manager(&reloads).await?;
        let mut tasks = Vec::with_capacity(self.lanes.len());
        let mut events = None;
        for lane in &mut self.lanes {
            let span = tracing::info_span!("balancer", name = %lane.name);
            let (t, e) = lane.start_sources().instrument(span).await;
            tasks.push(t);
            events = events.or(e);
        }
        let (reloader, asks) = Reloader::channel();
        Ok(Bound {
            gateway: self,
            front,
            workers: extra,
            access_log,
            admin,
            manager,
            events,
            tasks,
            reloader,
            asks,
            reloads,
        })
    }

    /// How many workers serve the front: `server.workers`, or [`set_workers`](Self::set_workers),
    /// or 1.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.front.workers.unwrap_or(1).max(1)
    }

    /// Serves the front with `n` workers, each a current-thread runtime on its own thread with
    /// its own `SO_REUSEPORT` listener (Unix; elsewhere one).
    pub fn set_workers(&mut self, n: usize) {
        self.front.workers = Some(n.max(1));
    }

    /// The front's listener, and with several workers the others on the same port.
    async fn open_front(
        &self,
        workers: usize,
    ) -> Result<(Server, Vec<workers::Worker>), BindError> {
        let (addr, config) = (self.front.listen, &self.front.serve);
        let what = "the balancer";
        if workers <= 1 || cfg!(not(unix)) {
            return Ok((listen(addr, config.clone(), what).await?, Vec::new()));
        }
        let err = |source| BindError::Listen { what, addr, source };
        let front = reuseport(addr, config.clone()).map_err(err)?;
        let bound = front.local_addr().map_err(err)?;
        let extra = workers::open(bound, config, &front.settings(), workers - 1).map_err(err)?;
        Ok((front, extra))
    }

    /// The manager service, and its port when one is configured.
    ///
    /// Its connections are capped at [`MANAGER_MAX_CONNECTIONS`], within the descriptors
    /// the front's cap leaves aside: with the front's own cap, 390 idle connections to the
    /// manager held 225 descriptors under `ulimit -n 512`, and the front and the manager
    /// together ran the process out (hostile round 12).
    async fn open_manager(
        &self,
        reloads: &ReloadStats,
    ) -> Result<(Option<Server>, ManagerService), BindError> {
        let admin = match self.manager.listen {
            Some(addr) => {
                let cap = MANAGER_MAX_CONNECTIONS.min(crate::serve::default_max_connections());
                let config = ServeConfig::new()
                    .max_connections(cap)
                    .header_read_timeout(MANAGER_IDLE)
                    .keep_alive_timeout(MANAGER_IDLE);
                Some(listen(addr, config, "the balancer-manager").await?)
            }
            None => None,
        };
        if let Some(a) = self.manager.listen.filter(|a| !a.ip().is_loopback()) {
            tracing::warn!(
                addr = %a,
                "the balancer-manager listens beyond loopback and has no authentication: \
                 anyone who reaches it can take members out of service"
            );
        }
        let mut names = self.manager.names.clone();
        if let Some(a) = admin.as_ref().and_then(|a| a.local_addr().ok()) {
            names.push(a.ip().to_string());
        }
        let mut metrics = Metrics::balancers(self.named_registries())
            .server(self.front.serve.stats.clone())
            .reloads(reloads.clone());
        for lane in &self.lanes {
            metrics = metrics.failover_of(&lane.name, &lane.stack.failover);
        }
        if let Some(log) = &self.lanes[0].stack.access_log {
            metrics = metrics.access_log(log.dropped_lines());
        }
        let manager = ManagerService::balancers(self.manager_lanes())?
            .allow_hosts(names)
            .with_metrics(metrics);
        Ok((admin, manager))
    }
}

impl LanePlan {
    /// The public URL with the front on `port`, and the rewriting and routes that use it.
    pub(crate) fn bound_to(&mut self, port: u16) {
        if let Ok(public) = self.public.url(port) {
            self.public.current = public;
        }
        if let Some(rewrite) = self.public.rewrite() {
            self.stack.forward = self.stack.forward.clone().reverse_rewrite(rewrite);
        }
        self.stack.set_public(&self.public.current);
    }

    /// Starts what changes members while the balancer runs: probes, the members file, DNS,
    /// etcd (after reading its members, so the balancer does not start empty), slow start.
    pub(crate) async fn start_sources(
        &mut self,
    ) -> (Tasks, Option<tokio::sync::broadcast::Receiver<HealthEvent>>) {
        let (probe, events) = match &self.sources.probe {
            Some(kind) => {
                let (task, events) = kind.spawn(&self.registry);
                (Some(task), Some(events))
            }
            None => (None, None),
        };
        let drain = self.sources.drain;
        let file_source = (self.sources.file.take())
            .map(|f| SourceTask::members_file(f, &self.statics, &self.registry, drain));
        let dns_source = (self.sources.dns.take())
            .map(|d| SourceTask::dns(d, &self.statics, &self.registry, drain));
        let etcd_source = match self.sources.etcd.take() {
            Some(source) => {
                super::etcd::initial(&source, &self.registry).await;
                Some(super::etcd::spawn(source, None, &self.registry, drain))
            }
            None => None,
        };
        let slow_start = self
            .sources
            .slow_start
            .map(|window| SlowStart::new(window).spawn(self.registry.clone()));
        let tasks = Tasks {
            probe,
            file_source,
            dns_source,
            etcd_source,
            slow_start,
        };
        (tasks, events)
    }
}

impl Gateway {
    /// Each balancer's name and registry, for metrics.
    pub(crate) fn named_registries(&self) -> Vec<(String, Registry)> {
        self.lanes
            .iter()
            .map(|l| (l.name.clone(), l.registry.clone()))
            .collect()
    }

    /// Each balancer's registry and description, for the manager.
    pub(crate) fn manager_lanes(&self) -> Vec<(Registry, ManagerInfo)> {
        self.lanes
            .iter()
            .map(|l| (l.registry.clone(), l.info.clone()))
            .collect()
    }
}

/// The first of the workers' `SO_REUSEPORT` listeners. `SO_REUSEPORT` would also let a
/// second balancer (a copy started by mistake, another configuration) share the port without
/// a word and take half the connections, so the port is first bound plainly: in use by
/// anyone, it is refused as a plain listener would be.
#[cfg(unix)]
fn reuseport(addr: SocketAddr, config: ServeConfig) -> io::Result<Server> {
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    Server::bind_reuseport(addr, config)
}

#[cfg(not(unix))]
fn reuseport(_: SocketAddr, _: ServeConfig) -> io::Result<Server> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The most connections the balancer-manager serves at once; the rest wait in its backlog.
/// Operators, dashboards and a metrics scraper need a few; each is one descriptor of the 64
/// the front's connection cap leaves for listeners, probes and files.
const MANAGER_MAX_CONNECTIONS: usize = 16;

/// How long a manager connection may wait for a request's head, or idle between requests:
/// a connection that sends nothing holds one of the manager's few places, and a scraper
/// waits behind it (round 13: 16 silent connections, reopened as they closed, kept
/// `/metrics` waiting 8 s, and 64 kept it 39 s, at the front's 10 s).
const MANAGER_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds `addr`, naming `what` in the error.
async fn listen(
    addr: SocketAddr,
    config: ServeConfig,
    what: &'static str,
) -> Result<Server, BindError> {
    Server::bind(addr, config)
        .await
        .map_err(|source| BindError::Listen { what, addr, source })
}
