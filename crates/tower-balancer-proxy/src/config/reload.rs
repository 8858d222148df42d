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

use std::collections::BTreeMap;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tower::discover::Change;
use tower_balancer::failover::FailoverConfig;
use tower_balancer::health::{HealthProbeTask, OutlierDetection, ReadmissionTask};
use tower_balancer::health::{SlowStart, SlowStartTask};
use tower_balancer::registry::{Health, HealthSource, MemberId, MemberSpec, Registry};

use super::build::ConfigFile;
use super::file::FileConfig;
use super::plan::{AbortOnDrop, PublicUrl};
use super::run::Gateway;
use super::strategy::ConfiguredStrategy;
use crate::access_log::{AccessLog, AccessLogWriter, LogFormat, LogTarget};
use crate::manager::ManagerService;
use crate::metrics::ReloadStats;
use crate::proxy::StackPlan;
use crate::serve::{LiveSettings, Reloadable};
use crate::tls::TlsError;

pub(super) use super::reloader::{Ask, ReloadError, Reloaded};

/// Everything a reload replaces, held while the balancer serves.
pub(super) struct Running {
    pub(super) registry: Registry,
    pub(super) file: FileConfig,
    pub(super) declared: Vec<MemberSpec>,
    pub(super) settings: LiveSettings,
    /// The public URL with the bound port.
    pub(super) port: u16,
    pub(super) manager: ManagerService,
    pub(super) stats: ReloadStats,
    pub(super) outliers: OutlierDetection,
    pub(super) readmissions: ReadmissionTask,
    pub(super) failover: FailoverConfig,
    pub(super) access_log: Option<(LogTarget, LogFormat, AccessLog)>,
    /// Writers of this log and of logs a reload replaced (they end when their stacks do).
    pub(super) writers: Vec<AccessLogWriter>,
    pub(super) probe: Option<HealthProbeTask>,
    pub(super) file_source: Option<AbortOnDrop>,
    pub(super) dns_source: Option<AbortOnDrop>,
    pub(super) etcd_source: Option<super::etcd::Following>,
    pub(super) slow_start: Option<SlowStartTask>,
    /// Members dropped by earlier reloads, draining.
    pub(super) drains: Vec<AbortOnDrop>,
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
    F: Fn(StackPlan<ConfiguredStrategy>, &Registry, OutlierDetection) -> Result<S, TlsError>,
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
                // reading certificates and keys is file I/O: off the runtime, which may be
                // serving clients too
                let built = {
                    let config = config.clone();
                    tokio::task::spawn_blocking(move || config.build()).await
                };
                match built {
                    Ok(Ok(g)) => running.apply(&config, g, &slots, &build),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(ReloadError::Stopped),
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
            Ok(r) => tracing::info!(
                added = ?r.added, changed = ?r.changed, draining = ?r.draining,
                "configuration reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the configuration in force stays");
            }
        }
        let _ = reply.send(result);
    }
    running
}

impl Running {
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
        F: Fn(StackPlan<ConfiguredStrategy>, &Registry, OutlierDetection) -> Result<S, TlsError>,
    {
        // probes reach members through the live registry's names
        let probe = config.probe(&g.stack.forward, &self.registry)?;
        let access_log = self.next_access_log(g.front.access_log.clone())?;
        let outliers = if g.stack.outliers == *self.outliers.config() {
            None
        } else {
            Some(OutlierDetection::new(
                self.registry.clone(),
                g.stack.outliers,
            ))
        };
        let plan = self.plan(g.stack.clone(), g.public.clone(), &access_log);
        let detection = outliers.as_ref().unwrap_or(&self.outliers);
        let mut stacks = Vec::with_capacity(slots.len());
        for (runtime, _) in slots {
            // the stack's pool spawns its tasks on the worker's runtime
            let _in = runtime.enter();
            stacks.push(build(plan.clone(), &self.registry, detection.clone())?);
        }
        // nothing below fails: the new configuration goes in whole
        if let Some(next) = outliers {
            self.replace_outliers(next);
        }
        let report = self.members(&g);
        self.failover = plan.failover.clone();
        for ((_, slot), stack) in slots.iter().zip(stacks) {
            slot.replace(stack);
        }
        self.settings.replace(g.front.serve.clone());
        self.manager.set_info(g.manager.info.clone());
        self.sources(g, probe);
        match access_log {
            NextLog::Keep => {}
            NextLog::Off => self.access_log = None,
            NextLog::New(target, format, log, writer) => {
                self.access_log = Some((target, format, log));
                self.writers.push(writer);
            }
        }
        let at_restart = self.at_restart(config.file());
        self.file = config.file().clone();
        Ok(Reloaded {
            at_restart,
            ..report
        })
    }

    /// The new stack's plan: counting on the same counters, logging to the log it will
    /// have, rewriting to the public URL with the bound port.
    fn plan(
        &self,
        mut plan: StackPlan<ConfiguredStrategy>,
        mut public: PublicUrl,
        log: &NextLog,
    ) -> StackPlan<ConfiguredStrategy> {
        plan.failover = plan.failover.counting_with(&self.failover);
        plan.access_log = match log {
            NextLog::Keep => self.access_log.as_ref().map(|(_, _, l)| l.clone()),
            NextLog::Off => None,
            NextLog::New(_, _, l, _) => Some(l.clone()),
        };
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

    /// Passive ejection with new settings: members the old one ejected come back now, or
    /// nothing would ever readmit them.
    fn replace_outliers(&mut self, next: OutlierDetection) {
        for id in self.outliers.ejected() {
            let _ =
                self.registry
                    .set_health_by(id.as_str(), HealthSource::Outlier, Health::Healthy);
        }
        self.readmissions = next.spawn();
        self.outliers = next;
    }

    /// Brings the registry to the file's members: new ones in, changed ones updated in
    /// place, dropped ones drained for the drain period, untouched ones left as they are
    /// (with whatever the manager or a probe set on them).
    fn members(&mut self, g: &Gateway) -> Reloaded {
        let mut report = Reloaded::default();
        if let Some(t) = g.file.balancer.panic_threshold {
            self.registry.set_panic_threshold(t);
        }
        let old: BTreeMap<MemberId, MemberSpec> = self
            .declared
            .drain(..)
            .map(|s| (s.id().clone(), s))
            .collect();
        let mut removed: Vec<MemberId> = Vec::new();
        for spec in &g.declared {
            match old.get(spec.id()) {
                Some(o) if o == spec => continue,
                Some(o) => {
                    let set_live = self
                        .registry
                        .load()
                        .get(spec.id().as_str())
                        .is_some_and(|m| m.state() != o.admin_state());
                    if set_live {
                        tracing::warn!(
                            member = %spec.id(),
                            status = %spec.admin_state(),
                            "the file changed this member: its status in the file replaces the one set while running"
                        );
                    }
                    report.changed.push(spec.id().clone());
                }
                None => report.added.push(spec.id().clone()),
            }
            if let Err(e) = self.registry.upsert(spec.clone()) {
                tracing::warn!(member = %spec.id(), error = %e, "member refused on reload");
            }
        }
        for id in old.keys() {
            if !g.declared.iter().any(|s| s.id() == id) {
                removed.push(id.clone());
            }
        }
        self.drains.retain(|d| !d.is_finished());
        if !removed.is_empty() {
            report.draining.clone_from(&removed);
            let changes: Vec<Result<Change<MemberId, MemberSpec>, std::convert::Infallible>> =
                removed
                    .into_iter()
                    .map(|id| Ok(Change::Remove(id)))
                    .collect();
            let drain = self
                .registry
                .discover(futures_util::stream::iter(changes))
                .drain_removed(g.sources.drain);
            self.drains.push(AbortOnDrop::spawn(drain));
        }
        self.declared.clone_from(&g.declared);
        report
    }

    /// Probes with the new settings (resumed: members keep the health they have), and the
    /// discovery sources and slow start again where their settings changed.
    fn sources(&mut self, mut g: Gateway, probe: Option<super::plan::ProbeKind>) {
        self.probe = probe.map(|p| p.spawn_resumed(&self.registry));
        if self.probe.is_none() {
            // nothing probes any more: what the last probe said down must not stay down
            for m in self.registry.load().members() {
                let _ = self.registry.set_health_by(
                    m.id().as_str(),
                    HealthSource::Probe,
                    Health::Healthy,
                );
            }
        }
        let (old, new) = (&self.file.balancer, &g.file.balancer);
        let drain = g.sources.drain;
        let drain_changed = old.drain != new.drain;
        if drain_changed
            || old.members_file != new.members_file
            || old.members_poll != new.members_poll
        {
            self.file_source = g
                .sources
                .file
                .take()
                .map(|f| AbortOnDrop::spawn(f.run(&self.registry, drain)));
        }
        if drain_changed || old.dns != new.dns {
            self.dns_source = g
                .sources
                .dns
                .take()
                .map(|d| AbortOnDrop::spawn(d.run(&self.registry, drain)));
        }
        // every reload starts etcd again, so a password file or certificate rewritten in
        // place (a rotation) is read again; the new source takes over the old one's members
        if drain_changed || old.etcd.is_some() || new.etcd.is_some() {
            let previous = self.etcd_source.take();
            self.etcd_source = match (g.sources.etcd.take(), previous) {
                // the new source removes what the old one added and no longer names
                (Some(next), previous) => Some(super::etcd::spawn(
                    next,
                    previous.as_ref(),
                    &self.registry,
                    drain,
                )),
                // the section is gone: the members etcd named drain and go
                (None, Some(previous)) => {
                    self.drains.push(previous.retire(&self.registry, drain));
                    None
                }
                (None, None) => None,
            };
        }
        if old.slow_start != new.slow_start {
            self.slow_start = new
                .slow_start
                .map(|w| SlowStart::new(w).spawn(self.registry.clone()));
        }
    }

    /// The keys whose new values wait for a restart, each said once in the log.
    fn at_restart(&self, next: &FileConfig) -> Vec<&'static str> {
        let (s, n) = (&self.file.server, &next.server);
        let manager = |f: &FileConfig| f.manager.as_ref().map(|m| (m.listen, m.names.clone()));
        let mut keys = Vec::new();
        if s.listen != n.listen {
            keys.push("server.listen");
        }
        if s.workers != n.workers {
            keys.push("server.workers");
        }
        if s.max_connections != n.max_connections {
            keys.push("server.max_connections");
        }
        if manager(&self.file) != manager(next) {
            keys.push("manager");
        }
        for key in &keys {
            tracing::warn!(
                key,
                "changed in the file: takes effect when the balancer restarts"
            );
        }
        keys
    }
}
