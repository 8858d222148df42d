//! Weighted random.
//!
//! Why: many balancer instances that each run round robin start in lock step after a deploy;
//! random picks need no shared counter and spread independently. Vose's alias method makes a
//! weighted draw O(1) whatever the member count.

use std::fmt;
use std::sync::Arc;

use super::pick::{first_available, two_below, PickContext, Strategy};
use crate::registry::Member;

/// Picks member `i` with probability `weight_i / sum(weights)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedRandom;

impl WeightedRandom {
    /// The strategy.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

/// Vose alias table: column `i` keeps `i` with probability `keep[i] / 2^32`, else `alias[i]`.
pub struct AliasTable {
    keep: Box<[u64]>,
    alias: Box<[u32]>,
}

impl fmt::Debug for AliasTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AliasTable")
            .field("columns", &self.keep.len())
            .finish()
    }
}

const ONE: u128 = 1 << 32;

impl AliasTable {
    /// Builds the table for `weights` (all ≥ 1).
    #[must_use]
    pub fn new(weights: &[u64]) -> Self {
        let n = weights.len();
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum::<u128>().max(1);
        // scaled[i] = w_i * n / total, in units of 2^-32, exactly as integers
        let mut scaled: Vec<u128> = weights
            .iter()
            .map(|&w| u128::from(w) * n as u128 * ONE / total)
            .collect();
        let mut keep = vec![ONE as u64; n];
        let mut alias: Vec<u32> = (0..n).map(|i| u32::try_from(i).unwrap_or(0)).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < ONE);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            keep[s] = u64::try_from(scaled[s]).unwrap_or(u64::MAX);
            alias[s] = u32::try_from(l).unwrap_or(0);
            scaled[l] = (scaled[l] + scaled[s]).saturating_sub(ONE);
            if scaled[l] < ONE {
                large.pop();
                small.push(l);
            }
        }
        // leftovers are 1 up to rounding
        Self {
            keep: keep.into_boxed_slice(),
            alias: alias.into_boxed_slice(),
        }
    }

    fn draw(&self) -> usize {
        // one draw: the high half picks the column, the low half decides keep or alias
        let (i, coin) = two_below(self.keep.len(), 1 << 32);
        if coin < self.keep[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

impl Strategy for WeightedRandom {
    type Table = AliasTable;

    fn name(&self) -> &'static str {
        "weighted-random"
    }

    fn build(&self, members: &[Arc<Member>]) -> AliasTable {
        let weights: Vec<u64> = members
            .iter()
            .map(|m| u64::from(m.effective_weight()))
            .collect();
        AliasTable::new(&weights)
    }

    fn pick(
        &self,
        table: &AliasTable,
        members: &[Arc<Member>],
        cx: &PickContext<'_>,
    ) -> Option<usize> {
        if members.is_empty() || table.keep.is_empty() {
            return None;
        }
        for _ in 0..8 {
            let i = table.draw();
            if !cx.is_excluded(&members[i]) {
                return Some(i);
            }
        }
        first_available(members, fastrand::usize(..members.len()), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_table_matches_weights() {
        let t = AliasTable::new(&[1, 3]);
        let mut counts = [0u32; 2];
        fastrand::seed(7);
        for _ in 0..100_000 {
            counts[t.draw()] += 1;
        }
        let share = f64::from(counts[1]) / 100_000.0;
        assert!((share - 0.75).abs() < 0.01, "{share}");
    }
}
