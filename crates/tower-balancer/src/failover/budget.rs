//! The retry budget: how many retries of possibly-processed requests recent traffic allows.
//!
//! Why not tower's `TpsBudget`: its slot rotation (tower 0.5.3) advances two slots whenever
//! a little more than one slice has passed, which is nearly always, so a 10 s window forgets
//! after 5 s and the reserve of `min_per_sec × window` comes back twice as often as
//! configured (a 503 storm measured 790 retries for 3,000 requests where 700 was the
//! ceiling). It also rounds the ratio to `1 / n` (30% becomes 33%) and takes a mutex on
//! every request. This one keeps ten slices in a ring of atomics tagged with the slice they
//! belong to, so a slice is only counted while it is inside the window, and it counts the
//! ratio in thousandths.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Slices in the window.
const SLICES: usize = 10;

/// A withdrawal in units: a deposit is worth `ratio × UNIT`.
const UNIT: i64 = 1000;

/// A sliding-window budget: every request deposits `ratio` of a retry, every retry withdraws
/// one, and a reserve of `min_per_sec × window` retries is always there on top.
pub(crate) struct RetryBudget {
    start: Instant,
    slice: Duration,
    deposit: i64,
    reserve: i64,
    /// The slice number each slot holds (`u64::MAX`: none yet).
    epochs: [AtomicU64; SLICES],
    values: [AtomicI64; SLICES],
}

impl RetryBudget {
    /// `ratio` of the requests of the last `window` (1–60 s) plus `min_per_sec` a second.
    pub(crate) fn new(window: Duration, min_per_sec: u32, ratio: f32) -> Self {
        let window = window.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        // at most 1,000,000 units a deposit: i64 holds 9 × 10^12 deposits a slice
        #[allow(clippy::cast_possible_truncation)]
        let deposit = (f64::from(ratio) * UNIT as f64).round() as i64;
        let secs = i64::try_from(window.as_secs()).unwrap_or(60);
        Self {
            start: Instant::now(),
            slice: window / SLICES as u32,
            deposit,
            reserve: i64::from(min_per_sec)
                .saturating_mul(secs)
                .saturating_mul(UNIT),
            epochs: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            values: std::array::from_fn(|_| AtomicI64::new(0)),
        }
    }

    /// A request was sent.
    pub(crate) fn deposit(&self) {
        if self.deposit > 0 {
            self.add(self.now(), self.deposit);
        }
    }

    /// A retry wants to go; `true` when the budget allows it (and it is spent).
    pub(crate) fn withdraw(&self) -> bool {
        let now = self.now();
        if self.balance(now) < UNIT {
            return false;
        }
        self.add(now, -UNIT);
        true
    }

    /// The retries the budget would allow now (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn available(&self) -> i64 {
        self.balance(self.now()) / UNIT
    }

    fn now(&self) -> u64 {
        let since = Instant::now().saturating_duration_since(self.start);
        u64::try_from(since.as_nanos() / self.slice.as_nanos().max(1)).unwrap_or(u64::MAX - 1)
    }

    fn balance(&self, now: u64) -> i64 {
        let live = (0..SLICES).filter(|&i| {
            let e = self.epochs[i].load(Ordering::Acquire);
            e != u64::MAX && now.wrapping_sub(e) < SLICES as u64
        });
        live.map(|i| self.values[i].load(Ordering::Relaxed))
            .fold(self.reserve, i64::saturating_add)
    }

    fn add(&self, now: u64, amount: i64) {
        #[allow(clippy::cast_possible_truncation)]
        let i = (now % SLICES as u64) as usize;
        let epoch = self.epochs[i].load(Ordering::Acquire);
        if epoch == now {
            self.values[i].fetch_add(amount, Ordering::Relaxed);
            return;
        }
        // The slot holds an older slice: whoever moves it to this one also takes the old
        // value out. Nobody adds to a slot of an old slice, so the value read here is exact;
        // adds by the losers of the race are kept (additions commute).
        let stale = self.values[i].load(Ordering::Relaxed);
        match self.epochs[i].compare_exchange(epoch, now, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                let old = if epoch == u64::MAX { 0 } else { stale };
                self.values[i].fetch_add(amount - old, Ordering::Relaxed);
            }
            Err(_) => {
                self.values[i].fetch_add(amount, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_20_percent_budget_allows_one_retry_in_five_requests() {
        // no floor: only the ratio counts
        let b = RetryBudget::new(Duration::from_secs(60), 0, 0.2);
        for _ in 0..100 {
            b.deposit();
        }
        let retries = (0..100).take_while(|_| b.withdraw()).count();
        assert_eq!(retries, 20);
    }

    #[test]
    fn ratios_are_not_rounded_to_one_in_n() {
        let b = RetryBudget::new(Duration::from_secs(60), 0, 0.3);
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!((0..100).take_while(|_| b.withdraw()).count(), 30);
    }

    #[test]
    fn the_reserve_is_min_per_sec_times_the_window() {
        let b = RetryBudget::new(Duration::from_secs(10), 10, 0.0);
        assert_eq!((0..1000).take_while(|_| b.withdraw()).count(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_comes_back_only_after_a_whole_window() {
        let b = RetryBudget::new(Duration::from_secs(10), 10, 0.0);
        assert_eq!((0..1000).take_while(|_| b.withdraw()).count(), 100);
        // tower's TpsBudget gives the reserve back after 5 s; this one holds it for the
        // whole window, slice by slice
        for _ in 0..8 {
            tokio::time::advance(Duration::from_millis(1100)).await;
            assert_eq!(b.available(), 0);
        }
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(b.available(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_count_for_the_window_then_expire() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
        for _ in 0..10 {
            b.deposit();
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.available(), 10);
        tokio::time::advance(Duration::from_millis(5500)).await;
        // the first ten are gone, the second ten still count
        assert_eq!(b.available(), 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_storm_gets_the_ratio_plus_one_reserve_a_window() {
        // 300 failing requests a second for 30 s, each wanting a retry
        let b = RetryBudget::new(Duration::from_secs(10), 10, 0.2);
        let mut retries = 0;
        for _ in 0..30 * 300 {
            b.deposit();
            retries += usize::from(b.withdraw());
            tokio::time::advance(Duration::from_micros(3333)).await;
        }
        // 20% of 9,000 is 1,800; the reserve of 100 comes back at most once a window
        assert!((1800..=1800 + 3 * 100).contains(&retries), "{retries}");
    }

    #[test]
    fn shared_between_threads_it_never_overspends() {
        let b = std::sync::Arc::new(RetryBudget::new(Duration::from_secs(60), 0, 0.2));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .map(|_| {
                            b.deposit();
                            usize::from(b.withdraw())
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // check-then-spend can overspend by a few when threads race; never by much
        assert!((7990..=8010).contains(&total), "{total}");
    }
}
