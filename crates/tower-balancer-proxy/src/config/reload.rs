//! Live reload: a serving balancer takes a new file (SIGHUP in the binary, nginx's
//! `-s reload`) without closing a connection or failing a request.
//!
//! Why this way: the file is built in full first, exactly as `--check` builds it, so a file
//! with a mistake changes nothing (the error is returned, logged and counted); only then is
//! anything swapped. The registry is kept, not rebuilt: members the file did not change keep
//! their health, ejections, counters and pooled connections, members it changed are updated
//! in place, members it dropped drain as they do when they leave a members file. Every other
//! part (strategy, stickiness and its keys, failover, ejection, body timeouts, the
//! forwarder's TLS) is a new stack that the next request on every connection takes
//! ([`Reloadable`]); requests in flight finish on the stack they began on. Serving
//! settings and the front's certificate reach connections accepted after the reload. What a
//! running process cannot change (its ports, workers and connection cap) is reported and
//! takes effect at the next start.

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use super::build::ConfigFile;
use super::file::FileConfig;
use super::plan::LanePlan;
pub(super) use super::reload_lane::{Prepared, RunningLane};
use super::run::Gateway;
use super::strategy::ConfiguredStrategy;
use super::workers::LaneBuild;
use crate::access_log::{AccessLog, AccessLogWriter, LogFormat, LogTarget};
use crate::manager::ManagerService;
use crate::metrics::{Metrics, ReloadStats};
use crate::proxy::StackPlan;
use crate::serve::{LiveSettings, Reloadable};
use crate::tls::TlsError;

pub(super) use super::reloader::{Ask, ReloadError, Reloaded};

/// Everything a reload replaces, held while the balancer serves: what the front shares,
/// then each balancer's own ([`RunningLane`]).
pub(super) struct Running {
    pub(super) file: FileConfig,
    /// The keys a reload cannot change, as the process started with them.
    pub(super) started: AtStart,
    pub(super) settings: LiveSettings,
    /// The public URL with the bound port.
    pub(super) port: u16,
    pub(super) manager: ManagerService,
    /// The manager's metrics, told of balancers a reload adds or removes.
    pub(super) metrics: Option<Metrics>,
    pub(super) stats: ReloadStats,
    pub(super) access_log: Option<(LogTarget, LogFormat, AccessLog)>,
    /// Writers of this log and of logs a reload replaced (they end when their stacks do).
    pub(super) writers: Vec<AccessLogWriter>,
    /// The balancers, in the file's order.
    pub(super) lanes: Vec<RunningLane>,
}

/// What becomes of the access log on a reload.
enum NextLog {
    /// The same log goes on.
    Keep,
    /// The file has none any more.
    Off,
    /// A log (re)opened for the new file.
    New(LogTarget, LogFormat, AccessLog, AccessLogWriter),
}

/// One stack slot per worker, with the runtime its stack is built on.
pub(super) type Slots<S> = Vec<(Handle, Reloadable<S>)>;

/// Applies reloads as they are asked for until `stop` turns true; returns what it held, so
/// the caller finishes the access log writers.
pub(super) async fn run<S, F>(
    mut asks: mpsc::Receiver<Ask>,
    mut running: Running,
    slots: Slots<S>,
    build: F,
    mut stop: watch::Receiver<bool>,
) -> Running
where
    S: Clone + Send + Sync + 'static,
    F: Fn(Vec<LaneBuild>) -> Result<S, TlsError>,
{
    loop {
        let ask = tokio::select! {
            ask = asks.recv() => match ask {
                Some(ask) => ask,
                None => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let (config, reply) = match ask {
            Ask::Reload(config, reply) => (*config, reply),
            Ask::ReopenLogs => {
                running.reopen_logs();
                continue;
            }
        };
        let result = match config {
            Ok(config) => {
                let mut tries = 0;
                loop {
                    let result = running.attempt(&config, &slots, &build).await;
                    if result.is_ok()
                        || tries == SHORT_TRIES
                        || !short_of_descriptors("a reload's files")
                    {
                        break result;
                    }
                    tries += 1;
                    tokio::select! {
                        () = tokio::time::sleep(SHORT_WAIT) => {}
                        _ = stop.wait_for(|s| *s) => break result,
                    }
                }
            }
            Err(e) => Err(e.into()),
        };
        if result.is_err() {
            // logrotate's SIGHUP must reopen the log even when the file is being edited
            running.reopen_logs();
        }
        running.stats.record(result.is_ok());
        match &result {
            Ok(r) => {
                tracing::info!(
                    added = ?r.added, changed = ?r.changed, draining = ?r.draining,
                    balancers_added = ?r.balancers_added, balancers_removed = ?r.balancers_removed,
                    "configuration reloaded"
                );
                if !r.at_restart.is_empty() {
                    tracing::warn!(keys = ?r.at_restart, "changed keys take effect only when the process restarts");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the configuration in force stays");
            }
        }
        let _ = reply.send(result);
    }
    running
}

/// How long a reload that found the process out of file descriptors waits before it is
/// tried again, and how many times it is (its file read, and what it names opened: the
/// certificates, keys, the access log). Refused at once, a SIGHUP under exhaustion was
/// lost, and five in a row were five refusals (hostile round 13).
pub(super) const SHORT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// See [`SHORT_WAIT`].
pub(super) const SHORT_TRIES: u32 = 10;

/// Whether a reload that failed at `what` met the process out of descriptors (the error's
/// text no longer carries its cause: the process is asked again); if so, counted
/// (`lb_out_of_descriptors_total{at="reload"}`), said at WARN, and an idle member
/// connection is closed to make room, for the caller to try again after [`SHORT_WAIT`].
pub(super) fn short_of_descriptors(what: &str) -> bool {
    use tower_balancer::descriptors::{count, short_now, Shortage};
    if !short_now() {
        return false;
    }
    count(Shortage::Reload);
    let closed = crate::forward::close_idle_member_connections(1, std::time::Duration::ZERO);
    tracing::warn!(
        closed_idle_member_connections = closed,
        "{what} could not be opened: the process is out of file descriptors; the reload is tried again in {SHORT_WAIT:?}"
    );
    true
}

impl Running {
    /// Builds `config` and swaps it in; on any error nothing has changed.
    async fn attempt<S, F>(
        &mut self,
        config: &ConfigFile,
        slots: &Slots<S>,
        build: &F,
    ) -> Result<Reloaded, ReloadError>
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(Vec<LaneBuild>) -> Result<S, TlsError>,
    {
        // reading certificates and keys is file I/O: off the runtime, which may be serving
        // clients too
        let built = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || config.build()).await
        };
        match built {
            Ok(Ok(g)) => self.apply(config, g, slots, build),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ReloadError::Stopped),
        }
    }

    /// Swaps in `g`, built from `config`; on any error nothing has changed.
    fn apply<S, F>(
        &mut self,
        config: &ConfigFile,
        g: Gateway,
        slots: &Slots<S>,
        build: &F,
    ) -> Result<Reloaded, ReloadError>
    where
        S: Clone,
        F: Fn(Vec<LaneBuild>) -> Result<S, TlsError>,
    {
        let access_log = self.next_access_log(g.front.access_log.clone())?;
        let views = config.lanes();
        let mut prepared = Vec::with_capacity(g.lanes.len());
        for (lane, view) in g.lanes.iter().zip(&views) {
            let old = self.lanes.iter().find(|l| l.name == lane.name);
            prepared.push(Prepared::new(
                old,
                lane,
                view,
                self.plan(old, lane, &access_log),
            )?);
        }
        let builds: Vec<LaneBuild> = prepared.iter().map(Prepared::build).collect();
        let mut stacks = Vec::with_capacity(slots.len());
        for (runtime, _) in slots {
            // the stack's pool spawns its tasks on the worker's runtime
            let _in = runtime.enter();
            stacks.push(build(builds.clone())?);
        }
        // nothing below fails: the new configuration goes in whole
        let mut report = Reloaded::default();
        let mut old_lanes = std::mem::take(&mut self.lanes);
        for (lane, ready) in g.lanes.into_iter().zip(prepared) {
            let running = match old_lanes.iter().position(|l| l.name == lane.name) {
                Some(i) => {
                    let mut old = old_lanes.swap_remove(i);
                    old.take(lane, ready, &mut report);
                    old
                }
                None => {
                    report.balancers_added.push(lane.name.clone());
                    RunningLane::start(lane, ready)
                }
            };
            self.lanes.push(running);
        }
        for gone in old_lanes {
            // its tasks stop; requests in flight finish on the stacks they began on
            report.balancers_removed.push(gone.name.clone());
        }
        for ((_, slot), stack) in slots.iter().zip(stacks) {
            slot.replace(stack);
        }
        self.settings.replace(g.front.serve.clone());
        self.announce();
        match access_log {
            NextLog::Keep => {}
            NextLog::Off => self.access_log = None,
            NextLog::New(target, format, log, writer) => {
                self.access_log = Some((target, format, log));
                self.writers.push(writer);
            }
        }
        report.at_restart = self.started.at_restart(config.file());
        self.file = config.file().clone();
        Ok(report)
    }

    /// Tells the manager and the metrics which balancers there are now.
    fn announce(&self) {
        self.manager.set_balancers(
            self.lanes
                .iter()
                .map(|l| (l.registry.clone(), l.info.clone()))
                .collect(),
        );
        if let Some(m) = &self.metrics {
            m.set_balancers(
                self.lanes
                    .iter()
                    .map(|l| (l.name.clone(), l.registry.clone()))
                    .collect(),
                self.lanes
                    .iter()
                    .map(|l| (l.name.clone(), l.failover.clone()))
                    .collect(),
            );
        }
    }

    /// Balancer `lane`'s new stack plan: counting on the same counters as the balancer of
    /// its name had, logging to the log it will have (the first balancer's front layers),
    /// rewriting to the public URL with the bound port.
    fn plan(
        &self,
        old: Option<&RunningLane>,
        lane: &LanePlan,
        log: &NextLog,
    ) -> StackPlan<ConfiguredStrategy> {
        let mut plan = lane.stack.clone();
        if let Some(old) = old {
            plan.failover = plan.failover.counting_with(&old.failover);
        }
        plan.access_log = match log {
            NextLog::Keep => self.access_log.as_ref().map(|(_, _, l)| l.clone()),
            NextLog::Off => None,
            NextLog::New(_, _, l, _) => Some(l.clone()),
        };
        let mut public = lane.public.clone();
        if let Ok(url) = public.url(self.port) {
            public.current = url;
        }
        if let Some(rewrite) = public.rewrite() {
            plan.forward = plan.forward.reverse_rewrite(rewrite);
        }
        plan.set_public(&public.current);
        plan
    }

    /// Opens the access log file again, if there is one.
    fn reopen_logs(&self) {
        if let Some((_, _, log)) = &self.access_log {
            log.reopen();
        }
    }

    /// The access log the new file asks for: the same one goes on (its file opened again,
    /// so a reload after logrotate writes to the new file); another one starts.
    fn next_access_log(
        &self,
        wanted: Option<(LogTarget, LogFormat)>,
    ) -> Result<NextLog, ReloadError> {
        let Some((target, format)) = wanted else {
            return Ok(NextLog::Off);
        };
        if let Some((t, f, log)) = &self.access_log {
            if *t == target && *f == format {
                log.reopen();
                return Ok(NextLog::Keep);
            }
        }
        let dropped = self.access_log.as_ref().map(|(_, _, l)| l.dropped_lines());
        let (log, writer) =
            AccessLog::start_counting(&target, format, dropped).map_err(|source| {
                ReloadError::AccessLog {
                    target: target.clone(),
                    source,
                }
            })?;
        Ok(NextLog::New(target, format, log, writer))
    }
}

/// The keys a reload cannot change (the sockets bound, the worker threads, the connection
/// cap), as the process started with them: they stay so until the next start, whatever the
/// files read since say.
#[derive(Debug)]
pub(super) struct AtStart {
    listen: std::net::SocketAddr,
    /// The file's `workers`, and the count running (which `--workers` may have set).
    workers: (Option<usize>, usize),
    max_connections: Option<usize>,
    manager: Option<(std::net::SocketAddr, Vec<String>)>,
}

impl AtStart {
    /// What `file` sets of those keys, with `workers` threads running.
    pub(super) fn new(file: &FileConfig, workers: usize) -> Self {
        Self {
            listen: file.server.listen,
            workers: (file.server.workers, workers),
            max_connections: file.server.max_connections,
            manager: manager_of(file),
        }
    }

    /// The keys whose values in `next` differ from those the process runs with, which wait
    /// for a restart (the reload loop says them in one WARN). Against what runs, not the
    /// file before: a change still waiting is said at every reload, and one put back is not.
    pub(super) fn at_restart(&self, next: &FileConfig) -> Vec<&'static str> {
        let n = &next.server;
        let mut keys = Vec::new();
        if self.listen != n.listen {
            keys.push("server.listen");
        }
        // the count running may come from the command line (`--workers`), not the file
        let (file_workers, running) = self.workers;
        if file_workers != n.workers && n.workers != Some(running) {
            keys.push("server.workers");
        }
        if self.max_connections != n.max_connections {
            keys.push("server.max_connections");
        }
        if self.manager != manager_of(next) {
            keys.push("manager");
        }
        // said once, with the reload's line, by the loop that reloads (not once a key here too)
        keys
    }
}

/// The manager's address and names in `file`, if it has a manager.
fn manager_of(file: &FileConfig) -> Option<(std::net::SocketAddr, Vec<String>)> {
    file.manager.as_ref().map(|m| (m.listen, m.names.clone()))
}
