//! Least outstanding requests (Apache `lbmethod=bybusyness`, HAProxy `leastconn`, nginx
//! `least_conn`).
//!
//! Why: members that answer slowly accumulate requests in flight; sending the next request to
//! the member with the fewest (relative to its weight) evens out latency without measuring it.
//! In-flight counts last until the response body ends, so streaming responses count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::pick::{PickContext, Strategy};
use crate::registry::Member;

/// Picks the member with the fewest requests in flight per unit of weight; ties go round
/// robin. A member with nothing in flight is taken at once, so an idle cluster costs one
/// look per pick; a busy one costs one atomic read per member (nginx and Apache scan the
/// same way).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastOutstanding;

impl LeastOutstanding {
    /// The strategy.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

/// The rotating start of [`LeastOutstanding`] and [`crate::strategy::ByTraffic`] scans.
#[derive(Debug, Default)]
pub struct ScanTable {
    next: AtomicUsize,
}

impl ScanTable {
    pub(crate) fn start(&self, n: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % n
    }
}

/// The index of the member with the lowest `score / weight`, scanning from a rotating start
/// so ties go round robin; stops early at a score of zero.
pub(crate) fn least_by(
    table: &ScanTable,
    members: &[Arc<Member>],
    cx: &PickContext<'_>,
    score: impl Fn(&Member) -> u64,
) -> Option<usize> {
    let n = members.len();
    if n == 0 {
        return None;
    }
    let start = table.start(n);
    let mut best: Option<(usize, u64, u64)> = None;
    for off in 0..n {
        let i = (start + off) % n;
        let m = &members[i];
        if cx.is_excluded(m) {
            continue;
        }
        let s = score(m);
        if s == 0 {
            return Some(i);
        }
        let w = u64::from(m.effective_weight());
        match best {
            // s / w < bs / bw  <=>  s * bw < bs * w
            Some((_, bs, bw))
                if u128::from(s) * u128::from(bw) >= u128::from(bs) * u128::from(w) => {}
            _ => best = Some((i, s, w)),
        }
    }
    best.map(|(i, _, _)| i)
}

impl Strategy for LeastOutstanding {
    type Table = ScanTable;

    fn name(&self) -> &'static str {
        "least-outstanding"
    }

    fn build(&self, _members: &[Arc<Member>]) -> ScanTable {
        ScanTable::default()
    }

    fn pick(
        &self,
        table: &ScanTable,
        members: &[Arc<Member>],
        cx: &PickContext<'_>,
    ) -> Option<usize> {
        least_by(table, members, cx, |m| m.stats().in_flight())
    }
}
