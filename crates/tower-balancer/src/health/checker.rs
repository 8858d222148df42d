//! The active checker: probes every member on a schedule and records the verdicts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use tokio::sync::broadcast;
use tokio::task::{AbortHandle, JoinSet};
use tower_service::Service;

use super::probe::ProbeResult;
use crate::error::DisplayChain;
use crate::registry::ProbeMemo;
use crate::registry::{AdminState, Health, HealthSource, Member, MemberId, Registry};
use crate::BoxError;

pub use super::settings::ProbeSettings;

/// A change of a member's health or state made by the checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// The member.
    pub member: MemberId,
    /// What happened.
    pub change: HealthChange,
    /// Why, when the change is a member going down and the probe said (`status 503,
    /// expected 200-399`, `connect to 10.0.0.1:9443: Connection refused`).
    pub reason: Option<String>,
}

/// What the checker changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthChange {
    /// Came up after `rise` passes.
    Up,
    /// Went down after `fall` failures.
    Down,
    /// Went down at once: the member sent the fail header.
    DownNow,
    /// Asked for draining (a drain status).
    Draining,
    /// Passed normally again after draining: active.
    Undrained,
}

/// Probes every member of a registry that is not disabled, including members added later,
/// with a probe `P` (a [`Service`] from `Arc<Member>` to [`ProbeResult`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_balancer::health::{HealthProbe, ProbeSettings, TcpProbe};
/// use tower_balancer::registry::Registry;
///
/// let registry = Registry::new();
/// let probe = HealthProbe::new(registry.clone(), TcpProbe, ProbeSettings::default());
/// let mut events = probe.subscribe();
/// let _task = probe.spawn(); // probing stops when this is dropped
/// # let _ = events.try_recv(); Ok(()) }
/// ```
pub struct HealthProbe<P> {
    registry: Registry,
    probe: P,
    settings: ProbeSettings,
    events: broadcast::Sender<HealthEvent>,
}

impl<P> std::fmt::Debug for HealthProbe<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthProbe")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The spawned checker; dropping it stops every probe.
#[derive(Debug)]
pub struct HealthProbeTask(tokio::task::JoinHandle<()>);

impl Drop for HealthProbeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<P> HealthProbe<P>
where
    P: Service<Arc<Member>, Response = ProbeResult> + Clone + Send + 'static,
    P::Error: Into<BoxError>,
    P::Future: Send,
{
    /// A checker for `registry` probing with `probe`.
    pub fn new(registry: Registry, probe: P, settings: ProbeSettings) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            registry,
            probe,
            settings,
            events,
        }
    }

    /// Receives every change the checker makes.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    /// Spawns [`run`](Self::run) on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    #[must_use]
    pub fn spawn(self) -> HealthProbeTask {
        // members that start down are down before this returns, so a caller that looks at
        // the registry next never sees them healthy before their first probe
        self.mark_initial();
        HealthProbeTask(tokio::spawn(self.run().in_current_span()))
    }

    /// Members that start down and no probe has answered yet (all at the start; after a
    /// restart of the checker, those added since) are down until their first probe.
    fn mark_initial(&self) {
        // members inserted from here on start down by the probe, with no window between
        // their insertion and this checker's seeing them
        self.registry
            .start_new_members_down(self.settings.initial == Health::Unhealthy);
        for m in self.registry.load().members() {
            self.mark_unprobed(m);
        }
    }

    fn mark_unprobed(&self, m: &Member) {
        if self.settings.initial == Health::Unhealthy && !m.probe_memo().probed {
            let _ = self.registry.set_health_by(
                m.id().as_str(),
                HealthSource::Probe,
                Health::Unhealthy,
            );
        }
    }

    /// Probes until dropped (or until the registry is dropped): one task per member, started
    /// and stopped as members come and go.
    // spelled out so the signature promises `Send + 'static` to whoever spawns it
    #[allow(clippy::manual_async_fn)]
    pub fn run(self) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let mut changes = self.registry.subscribe();
            let mut tasks = JoinSet::new();
            let mut running: HashMap<u64, AbortHandle> = HashMap::new();
            self.mark_initial();
            loop {
                let snapshot = self.registry.snapshot();
                running.retain(|serial, handle| {
                    let keep = snapshot.members().iter().any(|m| m.serial() == *serial);
                    if !keep {
                        handle.abort();
                    }
                    keep
                });
                for m in snapshot.members() {
                    if running.contains_key(&m.serial()) {
                        continue;
                    }
                    // added while the checker runs (a reload, discovery): it starts as the
                    // settings say, as the members at the start did
                    self.mark_unprobed(m);
                    let looper = MemberLoop {
                        member: m.clone(),
                        registry: self.registry.clone(),
                        probe: self.probe.clone(),
                        settings: self.settings,
                        events: self.events.clone(),
                    };
                    running.insert(m.serial(), tasks.spawn(looper.run().in_current_span()));
                }
                // reap finished tasks without waiting
                while tasks.try_join_next().is_some() {}
                if changes.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

struct MemberLoop<P> {
    member: Arc<Member>,
    registry: Registry,
    probe: P,
    settings: ProbeSettings,
    events: broadcast::Sender<HealthEvent>,
}

impl<P> MemberLoop<P>
where
    P: Service<Arc<Member>, Response = ProbeResult> + Send + 'static,
    P::Error: Into<BoxError>,
    P::Future: Send,
{
    fn still_registered(&self) -> bool {
        self.registry
            .load()
            .get(self.member.id().as_str())
            .is_some_and(|m| m.serial() == self.member.serial())
    }

    fn emit(&self, change: HealthChange, reason: Option<String>) {
        match (change, &reason) {
            (HealthChange::Up | HealthChange::Undrained, _) => {
                tracing::info!(member = %self.member.id(), ?change, "health probe");
            }
            (_, Some(why)) => {
                tracing::warn!(member = %self.member.id(), ?change, reason = %why, "health probe");
            }
            (_, None) => tracing::warn!(member = %self.member.id(), ?change, "health probe"),
        }
        let _ = self.events.send(HealthEvent {
            member: self.member.id().clone(),
            change,
            reason,
        });
    }

    fn set(&self, health: Health) {
        let id = self.member.id().as_str();
        let _ = self.registry.set_health_by(id, HealthSource::Probe, health);
        if health == Health::Healthy {
            // the probe saw the member fail and recover: that ends a passive ejection too
            let _ = self
                .registry
                .set_health_by(id, HealthSource::Outlier, Health::Healthy);
        }
    }

    /// One probe's verdict, and why it failed when the probe said; `None` when the probe
    /// could not be made for want of a file descriptor: the balancer's shortage, not the
    /// member's (a hostile test's probes failed so and took every member down).
    async fn probe_once(&mut self) -> Option<(ProbeResult, Option<String>)> {
        let probe = &mut self.probe;
        let member = self.member.clone();
        let call = async move {
            std::future::poll_fn(|cx| probe.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            probe.call(member).await.map_err(Into::into)
        };
        let limit = self.settings.timeout;
        Some(match tokio::time::timeout(limit, call).await {
            Ok(Ok(result)) => (result, None),
            Ok(Err(e)) if crate::descriptors::out_of_descriptors(&*e) => {
                no_verdict(&self.member, &*e);
                return None;
            }
            Ok(Err(e)) => (ProbeResult::Fail, Some(DisplayChain(&*e).to_string())),
            Err(_) => (
                ProbeResult::Fail,
                Some(format!("no answer within {} ms", limit.as_millis())),
            ),
        })
    }

    /// A member down from the start is said once, or an operator never hears of it.
    fn down_at_start(&self, reason: Option<&str>) {
        let why = reason.unwrap_or("the probe failed");
        tracing::warn!(member = %self.member.id(), reason = %why, "health probe: down at the start");
    }

    /// A pass while the probe never saw the member down ends only an ejection for connect
    /// failures (the member is reachable again): one for failed requests runs its time,
    /// since a health page can pass while they fail.
    fn readmit_outlier(&self) {
        if self.member.is_down_by(HealthSource::Outlier) && self.member.probe_may_readmit() {
            let id = self.member.id().as_str();
            let _ = self
                .registry
                .set_health_by(id, HealthSource::Outlier, Health::Healthy);
            tracing::info!(member = %self.member.id(), "probe passed: outlier readmitted");
        }
    }

    /// A drain status drains an active member; the next plain pass undoes what it drained.
    fn follow_drain(&self, result: ProbeResult, drained_by_probe: &mut bool) {
        let id = self.member.id().as_str();
        if result == ProbeResult::Drain && self.member.state() == AdminState::Active {
            let _ = self.registry.set_state(id, AdminState::Draining);
            *drained_by_probe = true;
            self.emit(HealthChange::Draining, None);
        } else if result == ProbeResult::Pass && *drained_by_probe {
            if self.member.state() == AdminState::Draining {
                let _ = self.registry.set_state(id, AdminState::Active);
                self.emit(HealthChange::Undrained, None);
            }
            *drained_by_probe = false;
        }
    }

    async fn run(mut self) {
        let s = self.settings;
        let mut up = !self.member.is_down_by(HealthSource::Probe);
        // where the last checker left off (a reload restarts the checker: its streaks and
        // its cadence go on, so reloads faster than the interval cannot freeze a member)
        let memo = self.member.probe_memo();
        let (mut passes, mut fails) = (memo.passes, memo.fails);
        let mut drained_by_probe = memo.drained_by_probe;
        // down only because members start down: the first pass brings it up (as Envoy's
        // `healthy_threshold` at start), so a balancer is not in panic for `rise` intervals
        let mut starting = !up && s.initial == Health::Unhealthy && !memo.probed;
        let mut first = !memo.probed;
        // a member never probed is probed at once: one that starts down takes traffic as
        // soon as it answers, and one that starts up but is dead is found an interval sooner
        let mut wait = memo.last.map_or(Duration::ZERO, |last| {
            s.wait(transitioning(up, passes, fails))
                .saturating_sub(last.elapsed())
        });
        loop {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if self.member.state() == AdminState::Disabled {
                wait = s.wait(transitioning(up, passes, fails));
                continue;
            }
            let at = tokio::time::Instant::now();
            let verdict = self.probe_once().await;
            // removed or replaced while the probe ran: write nothing, stop
            if !self.still_registered() {
                return;
            }
            // no verdict: neither a pass nor a failure, tried again at the usual time
            let Some((result, reason)) = verdict else {
                wait = s.wait(transitioning(up, passes, fails));
                continue;
            };
            if starting && matches!(result, ProbeResult::Fail | ProbeResult::FailNow) {
                self.down_at_start(reason.as_deref());
                // a member that fails at start has to earn its way in as any other
                starting = false;
            }
            match result {
                ProbeResult::Pass | ProbeResult::Drain => {
                    fails = 0;
                    passes = passes.saturating_add(1);
                    if up {
                        self.readmit_outlier();
                    }
                    if !up && (passes >= s.rise || starting) {
                        up = true;
                        starting = false;
                        self.set(Health::Healthy);
                        self.emit(HealthChange::Up, None);
                    }
                    self.follow_drain(result, &mut drained_by_probe);
                }
                ProbeResult::Fail | ProbeResult::FailNow => {
                    passes = 0;
                    fails = fails.saturating_add(1);
                    // the member's own fail header takes it out at once
                    let now = result == ProbeResult::FailNow;
                    if up && (now || fails >= s.fall) {
                        up = false;
                        self.go_down(now, reason);
                    }
                }
            }
            let memo = ProbeMemo {
                probed: true,
                passes,
                fails,
                last: Some(at),
                drained_by_probe,
            };
            self.remember(memo, &mut first);
            wait = s.wait(transitioning(up, passes, fails));
        }
    }

    /// Takes the member down: at once for its fail header (`now`), else after `fall`
    /// failures, the last one's `reason` said.
    fn go_down(&self, now: bool, reason: Option<String>) {
        self.set(Health::Unhealthy);
        if now {
            let why = "the member answered with its fail header";
            self.emit(HealthChange::DownNow, Some(why.into()));
        } else {
            self.emit(HealthChange::Down, reason);
        }
    }

    /// Keeps where this checker is, for the next one after a reload; after the member's
    /// first probe result, tells the registry (panic mode's WARN counts a member down only
    /// until its first probe as healthy).
    fn remember(&self, memo: ProbeMemo, first: &mut bool) {
        self.member.set_probe_memo(memo);
        if std::mem::take(first) {
            self.registry.first_probe_done();
        }
    }
}

/// A member on its way from up to down or back (a streak under way): probed at the fast
/// interval.
/// Says, at most once a second, that a probe found the process out of file descriptors and
/// counted for nothing.
#[cold]
fn no_verdict(member: &Member, e: &(dyn std::error::Error + 'static)) {
    crate::descriptors::count(crate::descriptors::Shortage::Probe);
    static BUDGET: crate::log_budget::LogBudget =
        crate::log_budget::LogBudget::warn(1, "probes out of descriptors");
    if BUDGET.admit() {
        tracing::warn!(
            member = %member.id(),
            error = %DisplayChain(e),
            "health probe not made: the process is out of file descriptors (counted neither \
             for nor against the member; raise the open-file limit)"
        );
    }
}

const fn transitioning(up: bool, passes: u32, fails: u32) -> bool {
    (up && fails > 0) || (!up && passes > 0)
}
