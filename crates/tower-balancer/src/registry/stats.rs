//! Live per-member statistics: in flight, requests, failures, bytes, peak-EWMA latency.
//!
//! Why atomics and not a lock: these are written on every request by every worker thread and
//! read by strategies on every pick, so they must cost one uncontended atomic operation each.
//! They live inside the member's `Arc`, so rebuilding a snapshot never resets them.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::load::RegistryLoad;
use super::member::Member;
use super::metrics::MemberMetrics;
use super::verdict::{FailureKind, Outcome};

/// How fast the latency estimate forgets: the same 10 s tower's `PeakEwma` uses by default.
pub const EWMA_DECAY: Duration = Duration::from_secs(10);

/// Counters and latency of one member. Read them through [`Member::stats`].
#[derive(Debug)]
pub struct MemberStats {
    metrics: MemberMetrics,
    in_flight: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    bytes_to_member: AtomicU64,
    bytes_from_member: AtomicU64,
    consecutive_failures: AtomicU32,
    consecutive_connect_failures: AtomicU32,
    last_failure: AtomicU16,
    ewma: PeakEwma,
    load: Arc<RegistryLoad>,
}

/// A plain copy of a member's counters at one moment, for status pages and logs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct StatsView {
    /// Requests sent and not yet finished (a request finishes when its response body ends).
    pub in_flight: u64,
    /// Requests that reached an outcome.
    pub requests: u64,
    /// Requests whose outcome counted as the member's failure.
    pub failures: u64,
    /// Request body bytes sent to the member.
    pub bytes_to_member: u64,
    /// Response body bytes received from the member.
    pub bytes_from_member: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The kind of the most recent failure, if any.
    pub last_failure: Option<FailureKind>,
    /// Peak-EWMA time to response headers, decayed to now; `None` before the first response.
    pub latency: Option<Duration>,
}

impl MemberStats {
    pub(crate) fn new(load: Arc<RegistryLoad>) -> Self {
        Self {
            metrics: MemberMetrics::default(),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bytes_to_member: AtomicU64::new(0),
            bytes_from_member: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            consecutive_connect_failures: AtomicU32::new(0),
            last_failure: AtomicU16::new(0),
            ewma: PeakEwma::new(),
            load,
        }
    }

    /// Requests in flight on this member.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Request plus response body bytes moved through this member (Apache `bytraffic`).
    #[must_use]
    pub fn traffic(&self) -> u64 {
        self.bytes_to_member
            .load(Ordering::Relaxed)
            .saturating_add(self.bytes_from_member.load(Ordering::Relaxed))
    }

    /// Failures since the last success.
    #[must_use]
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Connect failures since the last attempt that reached the member (a success or any
    /// other outcome): the surest sign that a member is gone.
    #[must_use]
    pub fn consecutive_connect_failures(&self) -> u32 {
        self.consecutive_connect_failures.load(Ordering::Relaxed)
    }

    /// The peak-EWMA latency estimate decayed to `now`, in nanoseconds; `None` before the
    /// first observation.
    #[must_use]
    pub fn latency_estimate_ns(&self, now: Instant) -> Option<f64> {
        self.ewma.estimate(self.load.epoch, now)
    }

    /// The last latency estimate in nanoseconds and when it was written, in nanoseconds after
    /// the registry's epoch; `None` before the first observation. Every member's estimate decays
    /// at the same rate, so two members compare without reading the clock: member A's decayed
    /// estimate over B's is `(a / b) · exp((stamp_a − stamp_b) / EWMA_DECAY)`.
    #[must_use]
    pub fn latency_sample(&self) -> Option<(f64, u64)> {
        self.ewma.sample()
    }

    /// The registry-wide load this member belongs to.
    #[must_use]
    pub fn registry_load(&self) -> &RegistryLoad {
        &self.load
    }

    /// Copies every counter.
    #[must_use]
    pub fn view(&self) -> StatsView {
        StatsView {
            in_flight: self.in_flight(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            bytes_to_member: self.bytes_to_member.load(Ordering::Relaxed),
            bytes_from_member: self.bytes_from_member.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures(),
            last_failure: FailureKind::from_code(self.last_failure.load(Ordering::Relaxed)),
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            latency: self
                .ewma
                .estimate(self.load.epoch, Instant::now())
                .map(|ns| Duration::from_nanos(ns as u64)),
        }
    }

    /// Adds request body bytes sent to the member.
    pub fn add_bytes_to_member(&self, n: u64) {
        self.bytes_to_member.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds response body bytes received from the member.
    pub fn add_bytes_from_member(&self, n: u64) {
        self.bytes_from_member.fetch_add(n, Ordering::Relaxed);
    }

    /// Counters for metrics: failures by kind, response times, retries, ejections.
    #[must_use]
    pub const fn metrics(&self) -> &MemberMetrics {
        &self.metrics
    }

    /// Records the outcome of one request: counters, failure streak and, for responses, the
    /// latency estimate.
    pub fn record(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Success { latency } => {
                self.record_head(*latency);
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            Outcome::Failure { kind, latency } => {
                if let Some(l) = latency {
                    self.metrics.observe_latency(*l);
                }
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.count_failure(*kind);
                if let Some(latency) = latency {
                    self.ewma.observe(*latency, self.load.epoch, Instant::now());
                }
            }
            Outcome::NotCounted => {
                self.requests.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An answer's head arrived in `latency` and its body is still to come: counted as a
    /// request with its latency, but the failure streak is left for the body to settle
    /// ([`body_ended`](Self::body_ended) or [`body_failed`](Self::body_failed)), so a member
    /// whose every body breaks off still builds a streak.
    pub(crate) fn record_head(&self, latency: Duration) {
        self.metrics.observe_latency(latency);
        self.requests.fetch_add(1, Ordering::Relaxed);
        // the connection worked
        self.consecutive_connect_failures
            .store(0, Ordering::Relaxed);
        self.ewma.observe(latency, self.load.epoch, Instant::now());
    }

    /// An answer's body came whole: the request succeeded, the failure streak ends.
    pub(crate) fn body_ended(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// An answer's body failed part way (the member closed or stalled): a failure of `kind`
    /// of a request already counted.
    pub(crate) fn body_failed(&self, kind: FailureKind) {
        self.count_failure(kind);
    }

    fn count_failure(&self, kind: FailureKind) {
        self.metrics.count_failure(kind);
        self.failures.fetch_add(1, Ordering::Relaxed);
        // saturating: a member failing for years must not wrap to "healthy"
        let _ = self
            .consecutive_failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(1))
            });
        if kind == FailureKind::Connect {
            let _ = self.consecutive_connect_failures.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |v| Some(v.saturating_add(1)),
            );
        } else {
            self.consecutive_connect_failures
                .store(0, Ordering::Relaxed);
        }
        self.last_failure.store(kind.code(), Ordering::Relaxed);
    }
}

/// Counts one request in flight on a member until dropped.
///
/// The balance layer holds one of these until the response body ends, so least-outstanding and
/// P2C see requests that are still streaming. Increment and decrement are paired by
/// construction, so the counter never underflows. When the member has a limit
/// ([`Member::max_in_flight`]), dropping the guard hands its slot to the first request
/// waiting in the registry's [`WaitQueue`](super::WaitQueue) that can use it.
#[derive(Debug)]
pub struct InFlight {
    member: Arc<Member>,
    /// Whether dropping this guard ends the request (false once its slot moved elsewhere).
    live: bool,
}

impl InFlight {
    /// Counts a request in flight on `member`, whatever its limit.
    #[must_use]
    pub fn start(member: Arc<Member>) -> Self {
        let stats = member.stats();
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        stats.load.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { member, live: true }
    }

    /// Counts a request in flight on `member` if its limit leaves room; `None` when full.
    #[must_use]
    pub fn try_start(member: Arc<Member>) -> Option<Self> {
        let max = member.max_in_flight();
        if max == 0 {
            return Some(Self::start(member));
        }
        let stats = member.stats();
        stats
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < u64::from(max)).then_some(n + 1)
            })
            .ok()?;
        stats.load.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Self { member, live: true })
    }

    /// A guard for a slot already counted (one a finishing request hands over).
    pub(crate) const fn adopt(member: Arc<Member>) -> Self {
        Self { member, live: true }
    }

    /// The member this request is in flight on.
    #[must_use]
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// Ends the count without offering the slot to anyone (the queue's own bookkeeping,
    /// under its lock).
    pub(crate) fn end_quietly(mut self) {
        self.live = false;
        end(&self.member);
    }

    /// Forgets the slot: its count moved to another guard.
    pub(crate) fn disarm(mut self) {
        self.live = false;
    }
}

/// Takes one request off `member`'s counts.
pub(crate) fn end(member: &Member) {
    let stats = member.stats();
    stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    stats.load.in_flight.fetch_sub(1, Ordering::Relaxed);
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        if self.member.max_in_flight() == 0 {
            end(&self.member);
        } else {
            self.member.stats().load.queue().release(&self.member);
        }
    }
}

/// Peak-sensitive EWMA of response latency, as in tower's `PeakEwma` and linkerd: a slower
/// response raises the estimate at once; faster ones pull it down over [`EWMA_DECAY`]; with no
/// traffic it decays toward zero so an idle member gets tried again.
#[derive(Debug)]
struct PeakEwma {
    /// f64 nanoseconds as bits; `u64::MAX` before the first observation.
    value: AtomicU64,
    /// When `value` was last written, as nanoseconds after the registry's epoch.
    stamp: AtomicU64,
}

const NO_SAMPLE: u64 = u64::MAX;

#[allow(clippy::cast_possible_truncation)]
fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(epoch).as_nanos() as u64
}

/// `exp(-elapsed / EWMA_DECAY)` for a (possibly negative) elapsed time in nanoseconds.
pub(crate) fn decay_factor(elapsed_ns: f64) -> f64 {
    // a constant: converting the Duration's u128 nanoseconds per call is a software routine
    const DECAY_NS: f64 = 10e9;
    const _: () = assert!(EWMA_DECAY.as_secs() == 10 && EWMA_DECAY.subsec_nanos() == 0);
    (-elapsed_ns / DECAY_NS).exp()
}

impl PeakEwma {
    fn new() -> Self {
        Self {
            value: AtomicU64::new(NO_SAMPLE),
            stamp: AtomicU64::new(0),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn observe(&self, rtt: Duration, epoch: Instant, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        let t = nanos_since(epoch, now);
        let prev_bits = self.value.load(Ordering::Relaxed);
        let next = if prev_bits == NO_SAMPLE {
            rtt
        } else {
            let prev = f64::from_bits(prev_bits);
            if rtt > prev {
                rtt
            } else {
                let elapsed = t.saturating_sub(self.stamp.load(Ordering::Relaxed));
                let w = decay_factor(elapsed as f64);
                prev * w + rtt * (1.0 - w)
            }
        };
        // Two racing writers may lose one sample; the estimate stays within both.
        self.stamp.store(t, Ordering::Relaxed);
        self.value.store(next.to_bits(), Ordering::Relaxed);
    }

    fn sample(&self) -> Option<(f64, u64)> {
        let bits = self.value.load(Ordering::Relaxed);
        (bits != NO_SAMPLE).then(|| (f64::from_bits(bits), self.stamp.load(Ordering::Relaxed)))
    }

    #[allow(clippy::cast_precision_loss)]
    fn estimate(&self, epoch: Instant, now: Instant) -> Option<f64> {
        let (value, stamp) = self.sample()?;
        let elapsed = nanos_since(epoch, now).saturating_sub(stamp);
        Some(value * decay_factor(elapsed as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_jumps_up_and_decays_down() {
        let epoch = Instant::now();
        let e = PeakEwma::new();
        assert_eq!(e.estimate(epoch, Instant::now()), None);
        e.observe(Duration::from_millis(10), epoch, Instant::now());
        let first = e.estimate(epoch, Instant::now()).unwrap();
        assert!((first - 10e6).abs() < 1.0);
        e.observe(Duration::from_millis(50), epoch, Instant::now());
        assert!((e.estimate(epoch, Instant::now()).unwrap() - 50e6).abs() < 1.0);
        tokio::time::advance(EWMA_DECAY).await;
        let decayed = e.estimate(epoch, Instant::now()).unwrap();
        assert!(decayed < 50e6 * 0.4 && decayed > 50e6 * 0.3, "{decayed}");
    }

    #[test]
    fn in_flight_guard_pairs_increment_and_decrement() {
        let load = Arc::new(RegistryLoad::default());
        let spec = super::super::MemberSpec::new(
            super::super::MemberId::new("n1").unwrap(),
            http::Uri::from_static("http://127.0.0.1:1"),
        );
        let m = Arc::new(Member::new(1, spec, load.clone()));
        let a = InFlight::start(m.clone());
        let b = InFlight::start(m.clone());
        assert_eq!(m.stats().in_flight(), 2);
        assert_eq!(load.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(m.stats().in_flight(), 0);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn failure_streak_resets_on_success() {
        let load = Arc::new(RegistryLoad::default());
        let s = MemberStats::new(load);
        let fail = Outcome::Failure {
            kind: FailureKind::Connect,
            latency: None,
        };
        s.record(&fail);
        s.record(&fail);
        assert_eq!(s.consecutive_failures(), 2);
        assert_eq!(s.view().last_failure, Some(FailureKind::Connect));
        s.record(&Outcome::Success {
            latency: Duration::from_millis(1),
        });
        assert_eq!(s.consecutive_failures(), 0);
        assert_eq!(s.view().requests, 3);
        assert_eq!(s.view().failures, 2);
    }
}
