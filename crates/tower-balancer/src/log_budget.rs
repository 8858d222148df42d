//! A budget of log lines a second for events that come once per request, such as a failed
//! request or a member's answer body cut short.
//!
//! Why: a balancer in front of a cluster that is down fails every request, and at tens of
//! thousands of requests a second a WARN line for each is tens of megabytes of log a few
//! seconds (a hostile test measured 41 MB in 8 s of a full outage), enough to fill an
//! operator's disk in an hour and to drown the lines that say why. The metrics count every
//! failure; the log needs examples and a count. A [`LogBudget`] lets the first lines of each
//! second through; the rest are the caller's to write at DEBUG (so `RUST_LOG=debug` still
//! sees every one), and the next line let through learns how many were held back, and since
//! when, so the log can say so once.
//!
//! ```
//! use tower_balancer::log_budget::{Admit, LogBudget};
//!
//! static FAILURES: LogBudget = LogBudget::new(10);
//!
//! fn failed(error: &str) {
//!     match FAILURES.admit() {
//!         Admit::Log { held_back: Some(h) } => {
//!             tracing::warn!(count = h.count, seconds = h.seconds, "failures not logged at WARN");
//!             tracing::warn!(error, "request failed");
//!         }
//!         Admit::Log { held_back: None } => tracing::warn!(error, "request failed"),
//!         Admit::Hold => tracing::debug!(error, "request failed"),
//!     }
//! }
//! # failed("connection refused");
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The WARN lines a second the balancer's own per-request events get at each site (a failed
/// request, a member's answer body cut short): enough to show what is failing and how.
pub const PER_SECOND: u32 = 10;

/// No second held lines back yet.
const NONE: u64 = u64::MAX;

/// At most `per_second` lines a second; see the module docs. Made `const`, so it can be a
/// `static` at the site that logs; shared by every thread.
#[derive(Debug)]
pub struct LogBudget {
    per_second: u32,
    /// The second (since the process's first use of any budget) now being counted.
    second: AtomicU64,
    /// Lines let through in that second.
    used: AtomicU32,
    /// Lines held back since the last report.
    held: AtomicU64,
    /// The second the first of them was held back in, or [`NONE`].
    held_since: AtomicU64,
}

/// What a caller may write for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write the line at its level; when lines were held back since the last report, say so
    /// first.
    Log {
        /// The lines held back since the last report, if any.
        held_back: Option<HeldBack>,
    },
    /// Over this second's budget: write the line at DEBUG at most.
    Hold,
}

/// Lines a budget held back since it last reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    /// How many.
    pub count: u64,
    /// Whole seconds from the first of them to now.
    pub seconds: u64,
}

impl LogBudget {
    /// A budget of `per_second` lines a second (0 holds every line back).
    #[must_use]
    pub const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            second: AtomicU64::new(0),
            used: AtomicU32::new(0),
            held: AtomicU64::new(0),
            held_since: AtomicU64::new(NONE),
        }
    }

    /// Whether one more line may be written now.
    pub fn admit(&self) -> Admit {
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        self.admit_at(start.elapsed().as_secs())
    }

    /// [`admit`](Self::admit) at `second` (seconds on any clock that does not go back).
    pub fn admit_at(&self, second: u64) -> Admit {
        let current = self.second.load(Ordering::Acquire);
        if second > current
            && self
                .second
                .compare_exchange(current, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // a new second: whoever moved the clock starts its count
            self.used.store(0, Ordering::Release);
        }
        if self.used.fetch_add(1, Ordering::AcqRel) >= self.per_second {
            // the first held line of a stretch dates it
            let _ =
                self.held_since
                    .compare_exchange(NONE, second, Ordering::AcqRel, Ordering::Acquire);
            self.held.fetch_add(1, Ordering::AcqRel);
            return Admit::Hold;
        }
        let count = self.held.swap(0, Ordering::AcqRel);
        if count == 0 {
            return Admit::Log { held_back: None };
        }
        let since = self.held_since.swap(NONE, Ordering::AcqRel);
        let seconds = if since == NONE {
            0
        } else {
            second.saturating_sub(since)
        };
        Admit::Log {
            held_back: Some(HeldBack { count, seconds }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(b: &LogBudget, second: u64, n: usize) -> Vec<Admit> {
        (0..n).map(|_| b.admit_at(second)).collect()
    }

    #[test]
    fn the_first_lines_of_a_second_pass_and_the_rest_are_held() {
        let b = LogBudget::new(3);
        let got = logged(&b, 5, 5);
        let free = Admit::Log { held_back: None };
        assert_eq!(got, [free, free, free, Admit::Hold, Admit::Hold]);
    }

    #[test]
    fn the_next_line_let_through_reports_what_was_held_and_since_when() {
        let b = LogBudget::new(2);
        logged(&b, 1, 2);
        logged(&b, 1, 4); // held from second 1
        logged(&b, 2, 2);
        logged(&b, 2, 3); // the reports went with second 2's first line; 3 more held
        assert_eq!(
            b.admit_at(7),
            Admit::Log {
                held_back: Some(HeldBack {
                    count: 3,
                    seconds: 5
                })
            }
        );
        assert_eq!(b.admit_at(7), Admit::Log { held_back: None });
        assert_eq!(b.admit_at(7), Admit::Hold);
    }

    #[test]
    fn the_report_counts_every_held_line_once() {
        let b = LogBudget::new(1);
        let mut reported = 0;
        let mut held = 0;
        for second in 0..50 {
            for _ in 0..(second % 7) {
                match b.admit_at(second) {
                    Admit::Hold => held += 1,
                    Admit::Log { held_back } => reported += held_back.map_or(0, |h| h.count),
                }
            }
        }
        // all but the stretch still waiting for its report
        assert_eq!(reported + b.held.load(Ordering::Acquire), held);
        assert!(reported > 0);
    }

    #[test]
    fn a_zero_budget_holds_everything_and_a_clock_going_back_starts_nothing() {
        let b = LogBudget::new(0);
        assert_eq!(b.admit_at(1), Admit::Hold);
        let b = LogBudget::new(1);
        assert_eq!(b.admit_at(9), Admit::Log { held_back: None });
        assert_eq!(b.admit_at(8), Admit::Hold);
    }

    #[test]
    fn threads_share_one_budget() {
        static B: LogBudget = LogBudget::new(100);
        let passed: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..1_000)
                            .filter(|_| matches!(B.admit_at(3), Admit::Log { .. }))
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, 100);
    }
}
