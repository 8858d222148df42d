//! Counters a metrics exporter reads per member: failures by kind, a response-time
//! histogram, retries sent to the member, requests resent after a keep-alive race and its
//! ejections. A few relaxed atomic adds per request, read at scrape time; nothing is locked
//! or allocated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::verdict::FailureKind;

/// The upper bounds of the response-time histogram's buckets, in seconds (Prometheus'
/// defaults); one more bucket counts the rest.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The failure kinds counted apart, in the order [`MemberMetrics::failures_by_kind`] gives.
const KINDS: [&str; 6] = ["connect", "timeout", "reset", "protocol", "status", "other"];

/// A member's counters for metrics.
#[derive(Debug, Default)]
pub struct MemberMetrics {
    failures: [AtomicU64; 6],
    latency: Durations,
    retries: AtomicU64,
    ejections: AtomicU64,
    budget_refusals: AtomicU64,
    resends: AtomicU64,
}

/// A response-time histogram as Prometheus writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// `(upper bound in seconds, responses in this bucket)`, not cumulative; the last bound
    /// is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of all response times, in seconds.
    pub sum: f64,
    /// How many responses were timed.
    pub count: u64,
}

/// A histogram of durations over [`LATENCY_BUCKETS`], in relaxed atomics.
#[derive(Debug, Default)]
pub(crate) struct Durations {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Durations {
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn histogram(&self) -> LatencyHistogram {
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.buckets)
            .map(|(b, n)| (b, n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        #[allow(clippy::cast_precision_loss)] // microseconds: exact up to 285 years
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        LatencyHistogram {
            buckets,
            sum,
            count,
        }
    }
}

impl MemberMetrics {
    pub(crate) fn observe_latency(&self, latency: Duration) {
        self.latency.observe(latency);
    }

    pub(crate) fn count_failure(&self, kind: FailureKind) {
        let i = match kind {
            FailureKind::Connect => 0,
            FailureKind::Timeout => 1,
            FailureKind::Reset => 2,
            FailureKind::Protocol => 3,
            FailureKind::Status(_) => 4,
            FailureKind::Other => 5,
        };
        self.failures[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_budget_refusal(&self) {
        self.budget_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_ejection(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Failures by kind: `connect`, `timeout`, `reset`, `protocol`, `status`, `other`.
    #[must_use]
    pub fn failures_by_kind(&self) -> [(&'static str, u64); 6] {
        std::array::from_fn(|i| (KINDS[i], self.failures[i].load(Ordering::Relaxed)))
    }

    /// Response times (to the response headers) of the attempts that got an answer.
    #[must_use]
    pub fn latency(&self) -> LatencyHistogram {
        self.latency.histogram()
    }

    /// Attempts this member received after another member had failed the request.
    #[must_use]
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Requests this member failed that the retry budget did not let go elsewhere (the
    /// client got this member's failure).
    #[must_use]
    pub fn budget_refusals(&self) -> u64 {
        self.budget_refusals.load(Ordering::Relaxed)
    }

    /// Counts a request sent to this member a second time, on a new connection, after the
    /// member closed the reused one with no answer as the request arrived (its keep-alive
    /// timeout racing the request). For the member client; not a failure.
    pub fn note_resend(&self) {
        self.resends.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent to this member a second time after it closed a reused connection as
    /// they arrived ([`MemberMetrics::note_resend`]). A few are keep-alive races; a count
    /// that grows with the traffic is a member dropping requests on reused connections.
    #[must_use]
    pub fn resends(&self) -> u64 {
        self.resends.load(Ordering::Relaxed)
    }

    /// Times passive ejection took this member out.
    #[must_use]
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets_and_sum() {
        let m = MemberMetrics::default();
        m.observe_latency(Duration::from_millis(3));
        m.observe_latency(Duration::from_millis(10));
        m.observe_latency(Duration::from_secs(60));
        let h = m.latency();
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], (0.005, 1));
        assert_eq!(h.buckets[1], (0.01, 1)); // the bound is inclusive
        assert_eq!(h.buckets[11], (f64::INFINITY, 1));
        assert!((h.sum - 60.013).abs() < 1e-9, "{}", h.sum);
        m.count_failure(FailureKind::Timeout);
        m.count_failure(FailureKind::Status(http::StatusCode::BAD_GATEWAY));
        let f = m.failures_by_kind();
        assert_eq!(
            (f[1], f[4], f[0]),
            (("timeout", 1), ("status", 1), ("connect", 0))
        );
    }
}
