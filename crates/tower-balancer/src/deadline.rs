//! Deadlines that cannot overflow the clock.
//!
//! Why: `Instant + Duration` panics when the sum does not fit, and durations come from
//! users (a timeout of `u64::MAX` seconds is a valid `Duration`). Past the clock's range a
//! deadline is as good as never, so it becomes thirty years away.

use std::time::Duration;

use tokio::time::Instant;

/// `from + after`, or thirty years after `from` when that does not fit.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let now = Instant::now();
/// assert_eq!(tower_balancer::deadline::deadline(now, Duration::from_secs(5)), now + Duration::from_secs(5));
/// assert!(tower_balancer::deadline::deadline(now, Duration::MAX) > now);
/// ```
#[must_use]
pub fn deadline(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .unwrap_or_else(|| from + Duration::from_secs(30 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_the_clock_is_far_away_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(deadline(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
    }
}
