//! Passive health: eject members that real requests see failing.
//!
//! Why passive as well as active: a probe every 2 s notices a dead member after seconds; the
//! requests that hit it notice at once. Like Envoy's outlier detection, a member is ejected
//! after a run of consecutive failures for a base time multiplied by how often it was ejected
//! before (30 s × n, at most 300 s), never more than a fraction of the members at once (10%)
//! but always at least one, so with two members a dead one is ejected. When its time is up it
//! comes back on probation: its next failure ejects it again at once.
//!
//! Two runs count, each with its own threshold: **connect failures in a row** (3 by default:
//! a refused or timed-out connect is the surest sign a member is gone, and costs nothing to
//! act on, since failover resends such a request elsewhere), and **failures of any kind in a
//! row** (5 by default, Envoy's `consecutive_5xx`: resets, timeouts, and the statuses the
//! balance layer counts as failures). Either can be turned off with 0.
//!
//! Only what the balance layer classified as the member's failure counts; the client's own
//! errors never do. The verdict is made at the answer's head: an answer whose body the
//! member cuts short afterwards has already counted as a success, so a member that sends
//! good heads and broken bodies is not ejected by this detector; the balance layer logs
//! each such body. With active probes as well, an ejection ends early when the probe saw the
//! member go down and come back (a member killed and restarted is back after its probe's
//! rise), or, for an ejection for connect failures alone, at the first passing probe (the
//! member is reachable again). A member whose health page keeps passing while its real
//! requests fail stays out for its whole ejection time.
//!
//! The decision is made on the request path without locks beyond this detector's own map; the registry write that takes the member out of rotation is done by
//! the [`readmissions`](OutlierDetection::readmissions) task, so no response future ever
//! waits on the registry's writer lock.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;
use tracing::Instrument;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::failure_rate::{FailurePercentage, Rates};
use crate::outcome::{Outcome, OutcomeObserver};
use crate::registry::{Health, HealthSource, Member, MemberId, Registry};

/// Outlier-ejection settings; the defaults are Envoy's, plus ejection after 3 connect
/// failures in a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierConfig {
    consecutive_failures: u32,
    consecutive_connect_failures: u32,
    base_ejection: Duration,
    max_ejection: Duration,
    max_ejected_fraction: f64,
    failure_percentage: Option<FailurePercentage>,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl OutlierConfig {
    /// 5 consecutive failures or 3 consecutive connect failures; 30 s × times ejected, at
    /// most 300 s; at most 10% ejected (but always one).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            consecutive_failures: 5,
            consecutive_connect_failures: 3,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_fraction: 0.1,
            failure_percentage: None,
        }
    }

    /// Failures of any kind in a row that eject a member (timeouts, resets, failure
    /// statuses, connect failures); 0 turns this rule off.
    #[must_use]
    pub const fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Connect failures in a row that eject a member; 0 turns this rule off.
    #[must_use]
    pub const fn consecutive_connect_failures(mut self, n: u32) -> Self {
        self.consecutive_connect_failures = n;
        self
    }

    /// Also ejects a member whose share of failed requests over an interval reaches
    /// `rule`'s (off unless set; see [`FailurePercentage`]).
    #[must_use]
    pub const fn failure_percentage(mut self, rule: FailurePercentage) -> Self {
        self.failure_percentage = Some(rule);
        self
    }

    /// The failure-percentage rule, when set.
    #[must_use]
    pub const fn failure_percentage_rule(&self) -> Option<FailurePercentage> {
        self.failure_percentage
    }

    /// The ejection time: `base × times ejected`, at most `max`.
    #[must_use]
    pub const fn ejection_time(mut self, base: Duration, max: Duration) -> Self {
        self.base_ejection = base;
        self.max_ejection = max;
        self
    }

    /// The most members ejected at once, as a fraction (0.0–1.0); any fraction above 0 allows
    /// at least one member (as Envoy's outlier detection), 0 ejects none.
    #[must_use]
    pub fn max_ejected_fraction(mut self, fraction: f64) -> Self {
        self.max_ejected_fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }
}

#[derive(Debug)]
struct Ejection {
    member: Arc<Member>,
    times: u32,
    /// Ejected until then (decided on the request path).
    until: Option<Instant>,
    /// Whether the readmission task has written the ejection to the registry.
    applied: bool,
    readmitted_at: Option<Instant>,
    probation: bool,
    /// The cap refused to eject it and that was said: said once, not per failed request.
    refusal_said: bool,
}

#[derive(Debug)]
struct OutlierState {
    /// The balancer's name, for its log lines (members of two balancers may share a name).
    name: Option<Box<str>>,
    registry: Registry,
    config: OutlierConfig,
    state: Mutex<HashMap<u64, Ejection>>,
    on_probation: AtomicUsize,
    wake: Notify,
}

/// Passive outlier ejection. Give it to [`BalanceLayer::observer`](crate::balance::BalanceLayer::observer)
/// and run [`readmissions`](OutlierDetection::readmissions) (or [`spawn`](OutlierDetection::spawn)) so
/// ejected members come back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_balancer::balance::BalanceLayer;
/// use tower_balancer::health::{OutlierConfig, OutlierDetection};
/// use tower_balancer::registry::Registry;
/// use tower_balancer::strategy::RoundRobin;
///
/// let registry = Registry::new();
/// let outliers = OutlierDetection::new(registry.clone(), OutlierConfig::default());
/// let _readmissions = outliers.spawn(); // stops when dropped
/// let layer = BalanceLayer::new(registry, RoundRobin::new()).observer(outliers.clone());
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OutlierDetection {
    inner: Arc<OutlierState>,
}

/// Runs [`OutlierDetection::readmissions`] on the tokio runtime until dropped.
#[derive(Debug)]
pub struct ReadmissionTask(tokio::task::JoinHandle<()>);

impl Drop for ReadmissionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock(m: &Mutex<HashMap<u64, Ejection>>) -> MutexGuard<'_, HashMap<u64, Ejection>> {
    // every critical section leaves the map consistent; a poisoned lock is still usable
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OutlierDetection {
    /// Outlier detection over `registry`'s members.
    #[must_use]
    pub fn new(registry: Registry, config: OutlierConfig) -> Self {
        Self::with_name(None, registry, config)
    }

    /// [`new`](Self::new) for the balancer `name`: its log lines say `balancer=name`, as
    /// members of two balancers may share a name.
    #[must_use]
    pub fn named(name: &str, registry: Registry, config: OutlierConfig) -> Self {
        Self::with_name(Some(name.into()), registry, config)
    }

    fn with_name(name: Option<Box<str>>, registry: Registry, config: OutlierConfig) -> Self {
        Self {
            inner: Arc::new(OutlierState {
                name,
                registry,
                config,
                state: Mutex::new(HashMap::new()),
                on_probation: AtomicUsize::new(0),
                wake: Notify::new(),
            }),
        }
    }

    /// The settings it ejects by.
    #[must_use]
    pub fn config(&self) -> &OutlierConfig {
        &self.inner.config
    }

    /// The members currently ejected.
    #[must_use]
    pub fn ejected(&self) -> Vec<MemberId> {
        let mut ids: Vec<MemberId> = lock(&self.inner.state)
            .values()
            .filter(|e| e.is_ejected())
            .map(|e| e.member.id().clone())
            .collect();
        ids.sort();
        ids
    }

    /// Takes over `old`'s ejections (a reload that changed the settings): members it
    /// ejected stay out for the rest of their time and keep their count of ejections, so
    /// tuning ejection during an incident does not send traffic back to bad members.
    /// `old` forgets them; run this detector's [`readmissions`](Self::readmissions) from
    /// now on.
    pub fn adopt_ejections(&self, old: &OutlierDetection) {
        let taken = std::mem::take(&mut *lock(&old.inner.state));
        let probation = old.inner.on_probation.swap(0, Ordering::AcqRel);
        let mut state = lock(&self.inner.state);
        for (serial, e) in taken {
            state.entry(serial).or_insert(e);
        }
        self.inner
            .on_probation
            .fetch_add(probation, Ordering::AcqRel);
        drop(state);
        self.inner.wake.notify_one();
    }

    /// Spawns [`readmissions`](Self::readmissions) on the current tokio runtime; the task
    /// stops when the returned handle is dropped.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    #[must_use]
    pub fn spawn(&self) -> ReadmissionTask {
        ReadmissionTask(tokio::spawn(self.readmissions().in_current_span()))
    }

    /// Takes ejected members out of rotation (the registry write), and readmits them when
    /// their time is up, on probation; with the failure-percentage rule, judges the members'
    /// shares once an interval. Runs until dropped; without it no member is ejected.
    pub fn readmissions(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let mut rates = inner.config.failure_percentage.map(|rule| {
                let start = Instant::now() + rule.interval();
                let mut every = tokio::time::interval_at(start, rule.interval());
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                (rule, every, Rates::default())
            });
            if let Some((rule, _, seen)) = rates.as_mut() {
                // the counts so far are the baseline: history is not judged
                seen.judge(rule, inner.registry.load().members().iter());
            }
            loop {
                let mut notified = pin!(inner.wake.notified());
                notified.as_mut().enable();
                let next = inner.readmit_due(Instant::now());
                let mut sleep = pin!(tokio::time::sleep_until(
                    next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
                ));
                let tick = std::future::poll_fn(|cx| {
                    if let Some((_, every, _)) = rates.as_mut() {
                        if every.poll_tick(cx).is_ready() {
                            return Poll::Ready(true);
                        }
                    }
                    if sleep.as_mut().poll(cx).is_ready() || notified.as_mut().poll(cx).is_ready() {
                        Poll::Ready(false)
                    } else {
                        Poll::Pending
                    }
                })
                .await;
                if let Some((rule, _, seen)) = rates.as_mut().filter(|_| tick) {
                    let snapshot = inner.registry.load();
                    for (member, percent, requests) in seen.judge(rule, snapshot.members().iter()) {
                        inner.eject(&member, false, Why::FailurePercentage(percent, requests));
                    }
                }
            }
        }
    }
}

impl Ejection {
    /// Ejected by us and not readmitted by anyone (a passing probe readmits early).
    fn is_ejected(&self) -> bool {
        self.until.is_some() && (!self.applied || self.member.is_down_by(HealthSource::Outlier))
    }
}

impl OutlierState {
    /// Whether `member` is still the registered member with its id (not removed or replaced).
    fn still_registered(&self, member: &Member) -> bool {
        self.registry
            .load()
            .get(member.id().as_str())
            .is_some_and(|m| m.serial() == member.serial())
    }

    /// Writes new ejections to the registry and readmits every member whose time is up;
    /// returns the next deadline.
    fn readmit_due(&self, now: Instant) -> Option<Instant> {
        let mut state = lock(&self.state);
        let mut next: Option<Instant> = None;
        state.retain(|_, e| self.still_registered(&e.member));
        for e in state.values_mut() {
            if e.until.is_some() && !e.applied {
                e.applied = true;
                e.member.stats().metrics().note_ejection();
                let _ = self.registry.set_health_by(
                    e.member.id().as_str(),
                    HealthSource::Outlier,
                    Health::Unhealthy,
                );
            }
            match e.until {
                Some(t) if t <= now => {
                    e.until = None;
                    e.readmitted_at = Some(now);
                    e.probation = true;
                    self.on_probation.fetch_add(1, Ordering::AcqRel);
                    let _ = self.registry.set_health_by(
                        e.member.id().as_str(),
                        HealthSource::Outlier,
                        Health::Healthy,
                    );
                    tracing::info!(balancer = self.name.as_deref(), member = %e.member.id(), "outlier readmitted on probation");
                }
                Some(t) => next = Some(next.map_or(t, |n| n.min(t))),
                None => {}
            }
        }
        next
    }

    /// Ejects `member`; `unreachable` when for connect failures alone, which a passing probe
    /// may end early.
    fn eject(&self, member: &Arc<Member>, unreachable: bool, why: Why) {
        // a fraction of 0 turns ejection off
        if !self.still_registered(member) || self.config.max_ejected_fraction <= 0.0 {
            return;
        }
        let now = Instant::now();
        let mut state = lock(&self.state);
        let members = self.registry.load().len();
        let ejected = state.values().filter(|e| e.is_ejected()).count();
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let allowed = ((members as f64 * self.config.max_ejected_fraction).floor() as usize).max(1);
        let e = state.entry(member.serial()).or_insert_with(|| Ejection {
            member: member.clone(),
            times: 0,
            until: None,
            applied: false,
            readmitted_at: None,
            probation: false,
            refusal_said: false,
        });
        if e.until.is_some() {
            if e.is_ejected() {
                return; // ejected already
            }
            // readmitted by someone else (a passing probe): forget that ejection
            e.until = None;
        }
        if ejected >= allowed {
            if !e.refusal_said {
                e.refusal_said = true;
                tracing::warn!(balancer = self.name.as_deref(), member = %member.id(), ejected, allowed, "not ejecting: too many members ejected already");
            }
            return;
        }
        e.refusal_said = false;
        if e.probation {
            e.probation = false;
            self.on_probation.fetch_sub(1, Ordering::AcqRel);
        }
        // a member that stayed healthy for the longest ejection time starts over
        if e.readmitted_at
            .is_some_and(|t| now.saturating_duration_since(t) > self.config.max_ejection)
        {
            e.times = 0;
        }
        e.times = e.times.saturating_add(1);
        let time = self
            .config
            .base_ejection
            .saturating_mul(e.times)
            .min(self.config.max_ejection);
        e.until = Some(now + time);
        e.applied = false;
        member.set_ejected_unreachable(unreachable);
        tracing::warn!(balancer = self.name.as_deref(), member = %member.id(), reason = %why, times = e.times, seconds = time.as_secs(), "outlier ejected");
        drop(state);
        self.wake.notify_one();
    }
}

/// Why a member is ejected, for its log line.
#[derive(Debug, Clone, Copy)]
enum Why {
    /// It failed a request while on probation after an ejection.
    OnProbation,
    /// This many connect failures in a row.
    ConnectFailures(u32),
    /// This many failures in a row.
    Failures(u32),
    /// This share of failed requests, in percent, of this many over the last interval.
    FailurePercentage(u64, u64),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OnProbation => f.write_str("failed on probation"),
            Self::ConnectFailures(n) => write!(f, "{n} connect failures in a row"),
            Self::Failures(n) => write!(f, "{n} failures in a row"),
            Self::FailurePercentage(p, n) => {
                write!(f, "{p}% of {n} requests failed in the last interval")
            }
        }
    }
}

impl OutcomeObserver for OutlierDetection {
    fn observe(&self, member: &Arc<Member>, outcome: &Outcome) {
        let inner = &*self.inner;
        match outcome {
            Outcome::Failure { .. } => {
                let on_probation = inner.on_probation.load(Ordering::Acquire) > 0
                    && lock(&inner.state)
                        .get(&member.serial())
                        .is_some_and(|e| e.probation);
                let (any, connect) = (
                    inner.config.consecutive_failures,
                    inner.config.consecutive_connect_failures,
                );
                let stats = member.stats();
                let unreachable = connect > 0 && stats.consecutive_connect_failures() >= connect;
                if on_probation || unreachable || (any > 0 && stats.consecutive_failures() >= any) {
                    let why = if on_probation {
                        Why::OnProbation
                    } else if unreachable {
                        Why::ConnectFailures(connect)
                    } else {
                        Why::Failures(any)
                    };
                    inner.eject(member, unreachable, why);
                }
            }
            Outcome::Success { .. } => {
                if inner.on_probation.load(Ordering::Acquire) > 0 {
                    if let Some(e) = lock(&inner.state).get_mut(&member.serial()) {
                        if e.probation {
                            e.probation = false;
                            inner.on_probation.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
            }
            Outcome::NotCounted => {}
        }
    }
}
