//! A bound balancer serving: the front and its workers, the manager, and the reload task
//! beside them until shutdown, then the drain.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::serve::ClientBody;
use http::Uri;
use tokio::sync::{broadcast, mpsc, watch};
use tower_balancer::health::{HealthEvent, HealthProbeTask, OutlierDetection, SlowStartTask};
use tower_balancer::registry::Registry;

use super::etcd::Following;
use super::owned::SourceTask;
use super::reload::{self, AtStart, Running, RunningLane};
use super::reloader::{Ask, Reloader};
use super::run::{BindError, Gateway};
use super::workers::{self, LaneBuild, Worker};
use crate::access_log::{AccessLog, AccessLogWriter, LogFormat, LogTarget};
use crate::manager::ManagerService;
use crate::metrics::ReloadStats;
use crate::serve::{Reloadable, Server};
use crate::tls::TlsError;

/// The tasks that change members while the balancer runs.
#[derive(Debug)]
pub(crate) struct Tasks {
    pub(crate) probe: Option<HealthProbeTask>,
    pub(crate) file_source: Option<SourceTask>,
    pub(crate) dns_source: Option<SourceTask>,
    pub(crate) etcd_source: Option<Following>,
    pub(crate) slow_start: Option<SlowStartTask>,
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
    /// Each balancer's tasks, in the file's order.
    pub(super) tasks: Vec<Tasks>,
    pub(super) reloader: Reloader,
    pub(super) asks: mpsc::Receiver<Ask>,
    pub(super) reloads: ReloadStats,
}

/// The stack every worker serves, made the same way at start and on reload: the first
/// balancer's front layers and routes over every balancer's own.
fn build_stack(lanes: Vec<LaneBuild>) -> Result<impl crate::serve::Servable + Sync, TlsError> {
    let mut lanes = lanes.into_iter();
    let Some((plan, registry, outliers)) = lanes.next() else {
        return Err(TlsError::Pem("a configuration without a balancer".into()));
    };
    plan.stack_lanes::<ClientBody>(&registry, outliers, lanes.collect())
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
    pub fn registry(&self) -> &Registry {
        self.gateway.registry()
    }

    /// The live member registry of the balancer named `name`.
    #[must_use]
    pub fn registry_of(&self, name: &str) -> Option<&Registry> {
        self.gateway.registry_of(name)
    }

    /// The URL clients use, with the port actually bound.
    #[must_use]
    pub fn public_url(&self) -> &Uri {
        self.gateway.public_url()
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
        let builds: Vec<LaneBuild> = g
            .lanes
            .iter()
            .map(|l| {
                let outliers =
                    OutlierDetection::named(&l.name, l.registry.clone(), l.stack.outliers);
                (l.stack.clone(), l.registry.clone(), outliers)
            })
            .collect();
        let (stop_tx, stop_rx) = watch::channel(false);
        let stack = Reloadable::new(build_stack(builds.clone())?);
        let (extra, mut slots) = workers::start(workers, &builds, &stop_rx, build_stack)?;
        slots.insert(0, (tokio::runtime::Handle::current(), stack.clone()));
        let port = front
            .local_addr()
            .map_or(g.front.listen.port(), |a| a.port());
        let (log, writers) = split_log(access_log);
        let listen = g.front.listen;
        let sections: Vec<_> = g.file.balancers().cloned().collect();
        let started_workers = g.workers();
        let lanes = g
            .lanes
            .into_iter()
            .zip(builds)
            .zip(tasks.into_iter().zip(sections))
            .map(|((lane, (_, _, outliers)), (tasks, section))| {
                RunningLane::new(lane, outliers, tasks, section)
            })
            .collect();
        let running = Running {
            started: AtStart::new(&g.file, started_workers),
            file: g.file,
            settings: front.settings(),
            port,
            manager: manager.clone(),
            metrics: manager.metrics(),
            stats: reloads,
            access_log: log,
            writers,
            lanes,
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
            addr: listen,
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

/// Writes what the access logs have queued, once every stack is gone.
async fn flush_access_logs(mut running: Running) {
    let writers = std::mem::take(&mut running.writers);
    // a sender kept to count what a blocked writer leaves queued (`finish` closes the queue)
    let log = running.access_log.as_ref().map(|(_, _, log)| log.clone());
    drop(running);
    for writer in writers {
        if !writer.finish(Duration::from_secs(5)).await {
            let queued = log.as_ref().map_or(0, AccessLog::abandon_queued);
            tracing::warn!(
                queued,
                "the access log was not written out in 5 s (its output is blocked); the lines \
                 still queued are lost"
            );
        }
    }
    // `/metrics` goes with the process: the last word on lines lost is here
    if let Some(lost) = log.map(|l| l.dropped()).filter(|n| *n > 0) {
        tracing::warn!(lost, "access-log lines were dropped while the balancer ran");
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
