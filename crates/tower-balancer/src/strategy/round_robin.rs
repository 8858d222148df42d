//! Smooth weighted round robin (Apache `lbmethod=byrequests`, nginx's default).
//!
//! Why a precomputed schedule: nginx's smooth WRR updates every member's counter under a lock on
//! each pick, O(n). We compute one period of an equally smooth interleaving when the snapshot is
//! built, and a pick is one atomic increment and one array read, whatever the member count.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::pick::{first_available, gcd, PickContext, Strategy};
use crate::registry::Member;

/// The longest schedule built by default; weights whose reduced sum exceeds it are scaled down
/// proportionally (each member keeps at least one slot).
pub const DEFAULT_MAX_SCHEDULE: usize = 1 << 16;

/// Smooth weighted round robin: over every `sum(weights)` picks each member is picked exactly
/// `weight` times, spread out rather than in runs (weights 5, 1, 1 give `a a a b c a a`, not
/// `a a a a a b c`).
///
/// The schedule is the earliest-deadline-first order of each member's picks at
/// `(k + ½) / weight`, ties to the lower id: the same shares and spread as nginx's smooth
/// WRR, not always the same order. Each rebuilt table starts at a random point of the period,
/// so frequent rebuilds do not favour the first member.
#[derive(Debug, Clone, Copy)]
pub struct RoundRobin {
    max_schedule: usize,
}

impl Default for RoundRobin {
    fn default() -> Self {
        Self::new()
    }
}

impl RoundRobin {
    /// Round robin with [`DEFAULT_MAX_SCHEDULE`].
    #[must_use]
    pub const fn new() -> Self {
        Self {
            max_schedule: DEFAULT_MAX_SCHEDULE,
        }
    }

    /// Caps the schedule length (memory: 4 bytes a slot); at least the member count is used.
    #[must_use]
    pub const fn max_schedule(mut self, slots: usize) -> Self {
        self.max_schedule = slots;
        self
    }
}

/// The per-tier schedule of [`RoundRobin`].
pub struct RoundRobinTable {
    schedule: Box<[u32]>,
    next: AtomicUsize,
}

impl fmt::Debug for RoundRobinTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoundRobinTable")
            .field("slots", &self.schedule.len())
            .finish_non_exhaustive()
    }
}

impl RoundRobinTable {
    /// The member indices of one period, in pick order.
    #[must_use]
    pub fn schedule(&self) -> &[u32] {
        &self.schedule
    }
}

/// Weights reduced by their gcd and, if their sum exceeds `cap`, scaled to fit.
pub(crate) fn reduced_weights(weights: &[u64], cap: usize) -> Vec<u64> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| (x / g).max(1)).collect();
    let total: u64 = w.iter().sum();
    let cap = (cap as u64).max(w.len() as u64);
    if total > cap {
        for x in &mut w {
            *x = (*x * cap / total).max(1);
        }
    }
    w
}

#[derive(PartialEq, Eq)]
struct Deadline {
    /// the next pick's deadline is (2k + 1) / (2 w)
    k: u64,
    w: u64,
    idx: u32,
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // BinaryHeap is a max-heap: reverse so the earliest deadline, then lowest index, pops
        let lhs = u128::from(2 * self.k + 1) * u128::from(other.w);
        let rhs = u128::from(2 * other.k + 1) * u128::from(self.w);
        rhs.cmp(&lhs).then_with(|| other.idx.cmp(&self.idx))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

pub(crate) fn smooth_schedule(weights: &[u64]) -> Box<[u32]> {
    let total: u64 = weights.iter().sum();
    let mut heap: BinaryHeap<Deadline> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Deadline {
            k: 0,
            w,
            idx: u32::try_from(i).unwrap_or(u32::MAX),
        })
        .collect();
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let Some(mut d) = heap.pop() else { break };
        schedule.push(d.idx);
        d.k += 1;
        heap.push(d);
    }
    schedule.into_boxed_slice()
}

impl Strategy for RoundRobin {
    type Table = RoundRobinTable;

    fn name(&self) -> &'static str {
        "round-robin"
    }

    fn build(&self, members: &[Arc<Member>]) -> RoundRobinTable {
        let weights: Vec<u64> = members
            .iter()
            .map(|m| u64::from(m.effective_weight()))
            .collect();
        let schedule = smooth_schedule(&reduced_weights(&weights, self.max_schedule));
        let start = fastrand::usize(..schedule.len().max(1));
        RoundRobinTable {
            schedule,
            next: AtomicUsize::new(start),
        }
    }

    fn pick(
        &self,
        table: &RoundRobinTable,
        members: &[Arc<Member>],
        cx: &PickContext<'_>,
    ) -> Option<usize> {
        let len = table.schedule.len();
        if len == 0 {
            return None;
        }
        // a retry takes the next member in turn without taking a turn itself: else, with a
        // failing member, every request's retry would use up the turn of the request after
        // it, and each first attempt would meet the failing member again
        let start = if cx.tried().is_empty() {
            table.next.fetch_add(1, Ordering::Relaxed)
        } else {
            table.next.load(Ordering::Relaxed)
        } % len;
        let first = table.schedule[start] as usize;
        if cx.excludes_nothing() {
            return Some(first);
        }
        next_allowed(table, members, start, cx)
    }
}

/// A retry, or members at their limit: the next slot in the schedule whose member is not
/// excluded. Bounded by the member count of distinct misses, then the plain scan finishes it.
/// Apart and cold, so the common pick saves no registers for it.
#[cold]
#[inline(never)]
fn next_allowed(
    table: &RoundRobinTable,
    members: &[Arc<Member>],
    start: usize,
    cx: &PickContext<'_>,
) -> Option<usize> {
    let len = table.schedule.len();
    for off in 0..len.min(members.len() * 4) {
        let i = table.schedule[(start + off) % len] as usize;
        if !cx.is_excluded(&members[i]) {
            return Some(i);
        }
    }
    first_available(members, table.schedule[start] as usize, cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_smooth_and_exact_over_a_period() {
        let s = smooth_schedule(&[5, 1, 1]);
        assert_eq!(&*s, &[0, 0, 0, 1, 2, 0, 0]);
        let s = smooth_schedule(&[1, 1, 1]);
        assert_eq!(&*s, &[0, 1, 2]);
        let s = smooth_schedule(&[3, 2]);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn weights_are_reduced_then_capped() {
        assert_eq!(reduced_weights(&[100, 200], 1 << 16), vec![1, 2]);
        let w = reduced_weights(&[65_535, 1, 65_534], 1000);
        assert!(w.iter().sum::<u64>() <= 1002);
        assert!(w.iter().all(|&x| x >= 1));
    }
}
