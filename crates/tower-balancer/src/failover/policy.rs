//! What the failover layer may retry, how often, and how fast.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::budget::RetryBudget;
use crate::balance::FailureStatuses;
use crate::strategy::MAX_TRIED;

/// The default number of retries after the first attempt (Apache `maxattempts`), never more
/// than members − 1 per request.
pub const DEFAULT_MAX_RETRIES: usize = 3;

/// The default replay cap: bodies up to 64 KiB can be sent again.
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

/// The default time an attempt may wait for a member's response headers: 60 s, as nginx's
/// `proxy_read_timeout` and Apache's `Timeout`.
pub const DEFAULT_PER_TRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Failover settings. [`FailoverConfig::default`] gives Apache-like behaviour with a retry
/// budget on top.
#[derive(Clone)]
pub struct FailoverConfig {
    pub(crate) max_retries: usize,
    pub(crate) per_try_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) fail_on_status: FailureStatuses,
    pub(crate) retry_non_idempotent: bool,
    pub(crate) replay_cap: usize,
    pub(crate) budget: Arc<RetryBudget>,
    /// Retries the budget refused, shared by every clone.
    pub(crate) refusals: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for FailoverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverConfig")
            .field("max_retries", &self.max_retries)
            .field("per_try_timeout", &self.per_try_timeout)
            .field("deadline", &self.deadline)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("retry_non_idempotent", &self.retry_non_idempotent)
            .field("replay_cap", &self.replay_cap)
            .finish_non_exhaustive()
    }
}

impl Default for FailoverConfig {
    /// At most 3 retries (and never more than members − 1), 60 s per attempt for the
    /// response headers ([`DEFAULT_PER_TRY_TIMEOUT`]) and no overall deadline, jittered
    /// backoff from 2 ms to 100 ms, no status retried, only idempotent methods retried after
    /// a request may have been sent, 64 KiB replay cap, and linkerd's budget for retries of
    /// requests that may have been processed: 20% of requests plus 10 retries a second,
    /// counted over a 10 s window. A burst of up to 100 retries passes at once (a member
    /// that hangs with many requests on it costs each client one timeout, not an error),
    /// and however long a storm lasts, retries stay under 0.2 × requests + 10 × (seconds +
    /// 10). Retries after connect failures are bounded by the attempt limit alone.
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            per_try_timeout: Some(DEFAULT_PER_TRY_TIMEOUT),
            deadline: None,
            backoff_base: Duration::from_millis(2),
            backoff_max: Duration::from_millis(100),
            fail_on_status: FailureStatuses::none(),
            retry_non_idempotent: false,
            replay_cap: DEFAULT_REPLAY_CAP,
            budget: Arc::new(RetryBudget::new(Duration::from_secs(10), 10, 0.2)),
            refusals: Arc::default(),
        }
    }
}

impl FailoverConfig {
    /// The most retries after the first attempt ([`max_retries`](Self::max_retries)).
    #[must_use]
    pub const fn retry_limit(&self) -> usize {
        self.max_retries
    }

    /// How long one attempt may wait for response headers, if it is bounded
    /// ([`per_try_timeout`](Self::per_try_timeout)).
    #[must_use]
    pub const fn attempt_timeout(&self) -> Option<Duration> {
        self.per_try_timeout
    }

    /// Retries the budget refused so far (requests answered with their first failure).
    #[must_use]
    pub fn budget_refusals(&self) -> u64 {
        self.refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts this configuration's budget refusals on `earlier`'s counter, so a reloaded
    /// configuration keeps counting where the one it replaces stopped (a metric's counter
    /// does not go back to zero on reload).
    #[must_use]
    pub fn counting_with(mut self, earlier: &Self) -> Self {
        self.refusals = earlier.refusals.clone();
        self
    }

    /// The statuses retried elsewhere ([`fail_on_status`](Self::fail_on_status)).
    #[must_use]
    pub const fn failure_statuses(&self) -> &FailureStatuses {
        &self.fail_on_status
    }

    /// The most retries after the first attempt (capped at 15, and at members − 1 per
    /// request, as Apache's `maxattempts` default).
    #[must_use]
    pub fn max_retries(mut self, retries: usize) -> Self {
        self.max_retries = retries.min(MAX_TRIED - 1);
        self
    }

    /// A time limit for each attempt, up to response headers (default 60 s); a timed-out
    /// attempt counts as a timeout of its member.
    #[must_use]
    pub const fn per_try_timeout(mut self, timeout: Duration) -> Self {
        self.per_try_timeout = Some(timeout);
        self
    }

    /// No time limit per attempt: an attempt waits as long as the transport does, which for
    /// a member that accepts and never answers is for ever. Only for members that may take
    /// unbounded time to start a response (long polling without keep-alive bytes).
    #[must_use]
    pub const fn no_per_try_timeout(mut self) -> Self {
        self.per_try_timeout = None;
        self
    }

    /// A time limit for all attempts together, backoff included; past it the answer is 504
    /// (or the last member's answer, if one came).
    #[must_use]
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Exponential backoff between attempts: a random wait up to `base × 2^(retry − 1)`, at
    /// most `max` (full jitter).
    #[must_use]
    pub const fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// Responses with these statuses are retried on another member (Apache `failonstatus`),
    /// for idempotent methods only unless [`retry_non_idempotent`](Self::retry_non_idempotent).
    #[must_use]
    pub const fn fail_on_status(mut self, statuses: FailureStatuses) -> Self {
        self.fail_on_status = statuses;
        self
    }

    /// Also retry POST, PATCH and other non-idempotent methods after the request may have
    /// reached a member. Off by default: a POST that reached a dying member may have been
    /// applied, and sending it again could apply it twice.
    #[must_use]
    pub const fn retry_non_idempotent(mut self, on: bool) -> Self {
        self.retry_non_idempotent = on;
        self
    }

    /// How many request body bytes are kept for a replay (default 64 KiB).
    #[must_use]
    pub const fn replay_cap(mut self, bytes: usize) -> Self {
        self.replay_cap = bytes;
        self
    }

    /// The retry budget for requests that may have been processed: `ratio` of recent
    /// requests (0.0–1000.0) plus `min_per_sec` retries a second, over a `window` of 1–60 s.
    /// Share one config between services to share it. Retries after connect failures never
    /// draw from it.
    #[must_use]
    pub fn budget(mut self, window: Duration, min_per_sec: u32, ratio: f32) -> Self {
        self.budget = Arc::new(RetryBudget::new(window, min_per_sec, ratio));
        self
    }

    /// The wait before retry number `retry` (1-based), with full jitter.
    pub(crate) fn backoff_for(&self, retry: usize) -> Duration {
        let shift = u32::try_from(retry.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        let ceiling = self
            .backoff_base
            .saturating_mul(1 << shift)
            .min(self.backoff_max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
#[must_use]
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c =
            FailoverConfig::default().backoff(Duration::from_millis(10), Duration::from_millis(50));
        for _ in 0..100 {
            assert!(c.backoff_for(1) <= Duration::from_millis(10));
            assert!(c.backoff_for(3) <= Duration::from_millis(40));
            assert!(c.backoff_for(30) <= Duration::from_millis(50));
        }
    }

    #[test]
    fn only_safe_methods_are_idempotent() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
