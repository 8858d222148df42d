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
//! Held-back lines are counted by [`report_held`], which one thread of the process calls
//! every second while a server holds a [`spawn_reporter`] handle, so the count of an
//! outage's last second does not wait for the next failure and comes once a second however
//! many servers (workers) run; with no reporter, by the next line a budget lets through.
//! Not both: their seconds do not start together, and a count from each, a millisecond
//! apart, read as two outages. A count line says how many lines it stands for
//! (`not_logged`) and over how many milliseconds, from the first of them (`over_ms`).
//!
//! ```
//! use tower_balancer::log_budget::LogBudget;
//!
//! static FAILURES: LogBudget = LogBudget::warn(10, "failed requests");
//!
//! fn failed(error: &str) {
//!     if FAILURES.admit() {
//!         tracing::warn!(error, "request failed");
//!     } else {
//!         tracing::debug!(error, "request failed");
//!     }
//! }
//! # failed("connection refused");
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
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
    /// What the lines are about, for the count of those held back.
    what: &'static str,
    /// The count's level: WARN, or INFO for lines that are INFO themselves.
    warn: bool,
    /// In [`LISTED`] already.
    listed: AtomicBool,
    /// The second (since the process's first use of any budget) now being counted, in the
    /// high 32 bits, and the lines let through in it, in the low 32: one word, so that a
    /// thread starting a new second's count cannot lose lines other threads let through as
    /// it did (two words let a budget of 100 pass 101).
    state: AtomicU64,
    /// Lines held back since the last report.
    held: AtomicU64,
    /// The second the first of them was held back in, or [`NONE`].
    held_since: AtomicU64,
}

/// What a caller may write for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
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
pub(crate) struct HeldBack {
    /// How many.
    pub(crate) count: u64,
    /// Milliseconds from the first of them to the count.
    pub(crate) millis: u64,
}

/// The budgets that have held lines back, for [`report_held`].
static LISTED: Mutex<Vec<&'static LogBudget>> = Mutex::new(Vec::new());

/// Reporters running ([`spawn_reporter`]); while there is one, it alone writes the counts.
static REPORTERS: AtomicUsize = AtomicUsize::new(0);

/// Milliseconds since the first use of any budget.
fn now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Writes the count of the lines every budget held back and has not counted yet (see the
/// module docs). A server calls it every second; calling it more often only writes counts
/// sooner.
pub fn report_held() {
    let listed: Vec<&'static LogBudget> = LISTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let ms = now();
    for budget in listed {
        if let Some(h) = budget.take_held(ms) {
            budget.report(h);
        }
    }
}

/// Has [`report_held`] called every second while the returned handle lives (a server holds
/// it while it serves). One thread of the process does it for every handle: a reporter
/// each (a server per worker) wrote a count line each, a millisecond apart, every second.
/// Should the thread fail to start, the lines let through count as if no reporter ran.
#[must_use = "the counts go back to the lines let through when the handle is dropped"]
pub fn spawn_reporter() -> Reporter {
    static THREAD: OnceLock<bool> = OnceLock::new();
    let running = *THREAD.get_or_init(|| {
        std::thread::Builder::new()
            .name("log-budget".into())
            .spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if REPORTERS.load(Ordering::Acquire) > 0 {
                    report_held();
                }
            })
            .is_ok()
    });
    if running {
        REPORTERS.fetch_add(1, Ordering::AcqRel);
    }
    Reporter { counted: running }
}

/// A hold on the reporter [`spawn_reporter`] runs; the last one dropped stops its counts.
#[derive(Debug)]
pub struct Reporter {
    /// In [`REPORTERS`].
    counted: bool,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if self.counted && REPORTERS.fetch_sub(1, Ordering::AcqRel) == 1 {
            // what was held since the last count is not left uncounted
            report_held();
        }
    }
}

impl LogBudget {
    /// A budget of `per_second` WARN lines a second (0 holds every line back) about `what`
    /// (`"failed requests"`): the count of the lines held back is a WARN line too.
    #[must_use]
    pub const fn warn(per_second: u32, what: &'static str) -> Self {
        Self::new(per_second, what, true)
    }

    /// [`warn`](Self::warn) for INFO lines: their count is an INFO line.
    #[must_use]
    pub const fn info(per_second: u32, what: &'static str) -> Self {
        Self::new(per_second, what, false)
    }

    const fn new(per_second: u32, what: &'static str, warn: bool) -> Self {
        Self {
            per_second,
            what,
            warn,
            listed: AtomicBool::new(false),
            state: AtomicU64::new(0),
            held: AtomicU64::new(0),
            held_since: AtomicU64::new(NONE),
        }
    }

    /// Whether one more line may be written now at the budget's level; `false`: at DEBUG
    /// at most. When lines were held back since the last count and no reporter runs, the
    /// count is written first.
    pub fn admit(&'static self) -> bool {
        let reporter = REPORTERS.load(Ordering::Acquire) > 0;
        match self.admit_at(now(), !reporter) {
            Admit::Log { held_back } => {
                if let Some(h) = held_back {
                    self.report(h);
                }
                true
            }
            Admit::Hold => {
                if !self.listed.swap(true, Ordering::AcqRel) {
                    LISTED
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(self);
                }
                false
            }
        }
    }

    /// The line that counts `h`.
    fn report(&self, h: HeldBack) {
        let (what, per_second) = (self.what, self.per_second);
        if self.warn {
            tracing::warn!(
                not_logged = h.count,
                over_ms = h.millis,
                "{what} beyond {per_second} a second were logged at DEBUG only"
            );
        } else {
            tracing::info!(
                not_logged = h.count,
                over_ms = h.millis,
                "{what} beyond {per_second} a second were logged at DEBUG only"
            );
        }
    }

    /// The lines held back and not counted yet, taken (so they are counted once).
    fn take_held(&self, ms: u64) -> Option<HeldBack> {
        let count = self.held.swap(0, Ordering::AcqRel);
        if count == 0 {
            return None;
        }
        let since = self.held_since.swap(NONE, Ordering::AcqRel);
        let millis = if since == NONE {
            0
        } else {
            ms.saturating_sub(since)
        };
        Some(HeldBack { count, millis })
    }

    /// [`admit`](Self::admit) at `ms` (milliseconds on any clock that does not go back; the
    /// budget is counted in its whole seconds); `count`: a line let through takes the count
    /// of those held back (no reporter runs).
    pub(crate) fn admit_at(&self, ms: u64, count: bool) -> Admit {
        // seconds since the first use wrap after 136 years
        let second = (ms / 1000) & u64::from(u32::MAX);
        let mut state = self.state.load(Ordering::Acquire);
        let admitted = loop {
            // a new second starts its count at 0; a line from a second already past (a
            // thread that read the clock earlier) counts in the current one
            let start = if second > state >> 32 {
                second << 32
            } else {
                state
            };
            let next = if start & u64::from(u32::MAX) < u64::from(self.per_second) {
                start + 1
            } else if start != state {
                start
            } else {
                break false;
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break next != start,
                Err(now) => state = now,
            }
        };
        if !admitted {
            // the first held line of a stretch dates it
            let _ = self
                .held_since
                .compare_exchange(NONE, ms, Ordering::AcqRel, Ordering::Acquire);
            self.held.fetch_add(1, Ordering::AcqRel);
            return Admit::Hold;
        }
        Admit::Log {
            held_back: if count { self.take_held(ms) } else { None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(b: &LogBudget, second: u64, n: usize) -> Vec<Admit> {
        (0..n).map(|_| b.admit_at(second * 1000, true)).collect()
    }

    #[test]
    fn the_first_lines_of_a_second_pass_and_the_rest_are_held() {
        let b = LogBudget::warn(3, "lines");
        let got = logged(&b, 5, 5);
        let free = Admit::Log { held_back: None };
        assert_eq!(got, [free, free, free, Admit::Hold, Admit::Hold]);
    }

    #[test]
    fn the_next_line_let_through_reports_what_was_held_and_since_when() {
        let b = LogBudget::warn(2, "lines");
        logged(&b, 1, 2);
        logged(&b, 1, 4); // held from second 1
        logged(&b, 2, 2);
        logged(&b, 2, 3); // the reports went with second 2's first line; 3 more held
        assert_eq!(
            b.admit_at(7_000, true),
            Admit::Log {
                held_back: Some(HeldBack {
                    count: 3,
                    millis: 5_000
                })
            }
        );
        assert_eq!(b.admit_at(7_000, true), Admit::Log { held_back: None });
        assert_eq!(b.admit_at(7_000, true), Admit::Hold);
    }

    #[test]
    fn the_report_counts_every_held_line_once() {
        let b = LogBudget::warn(1, "lines");
        let mut reported = 0;
        let mut held = 0;
        for second in 0..50 {
            for _ in 0..(second % 7) {
                match b.admit_at(second * 1000, true) {
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
    fn with_a_reporter_running_the_lines_let_through_leave_the_count_to_it() {
        let b = LogBudget::warn(1, "lines");
        logged(&b, 1, 3); // one through, two held
        assert_eq!(b.admit_at(2_250, false), Admit::Log { held_back: None });
        assert_eq!(
            b.take_held(2_400),
            Some(HeldBack {
                count: 2,
                millis: 1_400
            })
        );
    }

    #[test]
    fn reporters_are_known_to_the_budgets_while_any_is_held() {
        let before = REPORTERS.load(Ordering::Acquire);
        let (a, b) = (spawn_reporter(), spawn_reporter());
        assert_eq!(REPORTERS.load(Ordering::Acquire), before + 2);
        drop(a);
        assert_eq!(REPORTERS.load(Ordering::Acquire), before + 1);
        drop(b);
        assert_eq!(REPORTERS.load(Ordering::Acquire), before);
    }

    #[test]
    fn a_zero_budget_holds_everything_and_a_clock_going_back_starts_nothing() {
        let b = LogBudget::warn(0, "lines");
        assert_eq!(b.admit_at(1_000, true), Admit::Hold);
        let b = LogBudget::warn(1, "lines");
        assert_eq!(b.admit_at(9_000, true), Admit::Log { held_back: None });
        assert_eq!(b.admit_at(8_000, true), Admit::Hold);
    }

    #[test]
    fn threads_share_one_budget() {
        static B: LogBudget = LogBudget::warn(100, "lines");
        let passed: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..1_000)
                            .filter(|_| matches!(B.admit_at(3_000, true), Admit::Log { .. }))
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, 100);
    }

    #[test]
    fn report_held_counts_what_a_budget_held_back_once() {
        static B: LogBudget = LogBudget::info(0, "lines");
        assert!(!B.admit());
        assert!(!B.admit());
        assert!(LISTED.lock().unwrap().iter().any(|b| std::ptr::eq(*b, &B)));
        assert_eq!(B.held.load(Ordering::Acquire), 2);
        report_held();
        assert_eq!(B.held.load(Ordering::Acquire), 0);
        assert_eq!(B.take_held(0), None);
        // listed once however often it holds
        assert!(!B.admit());
        let listed = LISTED.lock().unwrap();
        assert_eq!(listed.iter().filter(|b| std::ptr::eq(**b, &B)).count(), 1);
    }
}
