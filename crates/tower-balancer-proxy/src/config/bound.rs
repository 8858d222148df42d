//! A bound balancer serving: the front and its workers, the manager, and the reload task
//! beside them until shutdown, then the drain.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;
use hyper::body::Incoming;
use tokio::sync::{broadcast, mpsc, watch};
use tower_balancer::health::{HealthEvent, HealthProbeTask, OutlierDetection, SlowStartTask};
use tower_balancer::registry::Registry;

use super::etcd::Following;
use super::plan::AbortOnDrop;
use super::reload::{self, Running};
use super::reloader::{Ask, Reloader};
use super::run::{BindError, Gateway};
use super::strategy::ConfiguredStrategy;
use super::workers::{self, Worker};
use crate::access_log::{AccessLog, AccessLogWriter, LogFormat, LogTarget};
use crate::manager::ManagerService;
use crate::metrics::ReloadStats;
use crate::proxy::StackPlan;
use crate::serve::{Reloadable, Server};
use crate::tls::TlsError;

/// The tasks that change members while the balancer runs.
#[derive(Debug)]
pub(super) struct Tasks {
    pub(super) probe: Option<HealthProbeTask>,
    pub(super) file_source: Option<AbortOnDrop>,
    pub(super) dns_source: Option<AbortOnDrop>,
    pub(super) etcd_source: Option<Following>,
    pub(super) slow_start: Option<SlowStartTask>,
}

/// A balancer with its ports open and probes running; [`serve`](Self::serve) serves it.
#[derive(Debug)]
pub struct Bound {
    pub(super) gateway: Gateway,
    pub(super) front: Server,
    pub(super) workers: Vec<Worker>,
    pub(super) access_log: Option<(LogTarget, LogFormat, AccessLog, AccessLogWriter)>,
    pub(super) admin: Option<Server>,
    pub(super) manager: ManagerService,
    pub(super) events: Option<broadcast::Receiver<HealthEvent>>,
    pub(super) tasks: Tasks,
    pub(super) reloader: Reloader,
    pub(super) asks: mpsc::Receiver<Ask>,
    pub(super) reloads: ReloadStats,
}

/// The stack every worker serves, made the same way at start and on reload.
fn build_stack(
    plan: StackPlan<ConfiguredStrategy>,
    registry: &Registry,
    outliers: OutlierDetection,
) -> Result<impl crate::serve::Servable + Sync, TlsError> {
    plan.stack::<Incoming>(registry, outliers)
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
    pub const fn manager(&self) -> &ManagerService {
        &self.manager
    }

    /// The live member registry.
    #[must_use]
    pub const fn registry(&self) -> &Registry {
        &self.gateway.registry
    }

    /// The URL clients use, with the port actually bound.
    #[must_use]
    pub const fn public_url(&self) -> &Uri {
        &self.gateway.public.current
    }

    /// Health probe verdicts as they happen (none when probes are off), from the probes
    /// started at bind (a reload starts new ones).
    #[must_use]
    pub fn health_events(&self) -> Option<broadcast::Receiver<HealthEvent>> {
        self.events.as_ref().map(broadcast::Receiver::resubscribe)
    }

    /// Reloads the configuration while [`serve`](Self::serve) runs: take it before serving.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_balancer_proxy::config::ConfigFile;
    ///
    /// let bound = ConfigFile::from_file("lb.toml")?.build()?.bind().await?;
    /// let reloader = bound.reloader();
    /// tokio::spawn(async move {
    ///     // on whatever tells you the file changed (SIGHUP in the binary)
    ///     match reloader.reload_file("lb.toml").await {
    ///         Ok(done) => println!("reloaded: {done:?}"),
    ///         Err(e) => eprintln!("kept the configuration in force: {e}"),
    ///     }
    /// });
    /// bound.serve(std::future::pending()).await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Reloads so far, applied and refused (also at the manager's `/metrics`).
    #[must_use]
    pub fn reloads(&self) -> ReloadStats {
        self.reloads.clone()
    }

    /// Serves clients (and the manager) until `shutdown` completes, applying reloads asked
    /// through [`reloader`](Self::reloader) meanwhile, then finishes in-flight requests
    /// within the graceful timeout. Probes stop when this returns.
    ///
    /// # Errors
    /// [`BindError::Tls`] if the members' TLS settings are refused; server errors otherwise.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), BindError> {
        let Self {
            gateway: g,
            front,
            workers,
            access_log,
            admin,
            manager,
            tasks,
            asks,
            reloads,
            ..
        } = self;
        let outliers = OutlierDetection::new(g.registry.clone(), g.stack.outliers);
        let readmissions = outliers.spawn();
        let (stop_tx, stop_rx) = watch::channel(false);
        let stack = Reloadable::new(build_stack(g.stack.clone(), &g.registry, outliers.clone())?);
        let (extra, mut slots) = workers::start(
            workers,
            &g.stack,
            &g.registry,
            &outliers,
            &stop_rx,
            build_stack,
        )?;
        slots.insert(0, (tokio::runtime::Handle::current(), stack.clone()));
        // the stacks hold the log now; this sender would keep its writer from ending
        let mut g = g;
        g.stack.access_log = None;
        let port = front
            .local_addr()
            .map_or(g.front.listen.port(), |a| a.port());
        let (log, writers) = split_log(access_log);
        let running = Running {
            registry: g.registry.clone(),
            file: g.file,
            declared: g.declared,
            settings: front.settings(),
            port,
            manager: manager.clone(),
            stats: reloads,
            outliers,
            readmissions,
            failover: g.stack.failover,
            access_log: log,
            writers,
            probe: tasks.probe,
            file_source: tasks.file_source,
            dns_source: tasks.dns_source,
            etcd_source: tasks.etcd_source,
            slow_start: tasks.slow_start,
            drains: Vec::new(),
        };
        let reloading = tokio::spawn(reload::run(
            asks,
            running,
            slots,
            build_stack,
            stop_rx.clone(),
        ));
        let admin = admin.map(|admin| serve_manager(admin, manager, stop_rx.clone()));
        let (shutdown, stop_tx) = stop_all_with(shutdown, stop_tx);
        let result = front.serve(stack, shutdown).await;
        let _ = stop_tx.send(true);
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        for worker in extra {
            // each finishes its in-flight requests within the graceful timeout
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
        if let Ok(running) = reloading.await {
            flush_access_logs(running).await;
        }
        result.map_err(|source| BindError::Listen {
            what: "the balancer",
            addr: g.front.listen,
            source,
        })
    }
}

/// Serves the manager on its port until `stop` turns true.
fn serve_manager(
    admin: Server,
    manager: ManagerService,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<io::Result<()>> {
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        admin.serve(manager, stopped).await
    })
}

/// Writes what the access logs have queued, once every stack (and with it every sender) is
/// gone.
async fn flush_access_logs(mut running: Running) {
    let writers = std::mem::take(&mut running.writers);
    drop(running);
    for writer in writers {
        writer.finish(Duration::from_secs(5)).await;
    }
}

/// The access log's sender side and its writers.
#[allow(clippy::type_complexity)]
fn split_log(
    access_log: Option<(LogTarget, LogFormat, AccessLog, AccessLogWriter)>,
) -> (
    Option<(LogTarget, LogFormat, AccessLog)>,
    Vec<AccessLogWriter>,
) {
    match access_log {
        Some((target, format, log, writer)) => (Some((target, format, log)), vec![writer]),
        None => (None, Vec::new()),
    }
}

/// `shutdown`, telling every worker, the manager and the reload task to stop the moment it
/// completes (not once the front has drained), and the sender to tell them again.
fn stop_all_with(
    shutdown: impl Future<Output = ()> + Send,
    stop: watch::Sender<bool>,
) -> (
    impl Future<Output = ()> + Send,
    std::sync::Arc<watch::Sender<bool>>,
) {
    let stop = std::sync::Arc::new(stop);
    let stopping = stop.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    (shutdown, stop)
}
