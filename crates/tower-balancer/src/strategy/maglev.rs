//! Maglev consistent hashing (Google's Maglev; Envoy `MAGLEV`).
//!
//! Why beside the ring: a Maglev lookup is one modulo and one array read, and its table spreads
//! keys almost perfectly evenly with a fixed memory cost, at the price of slightly more keys
//! moving when membership changes than a ring would move.

use std::fmt;
use std::sync::Arc;

use super::hash::{first_admitted, hash_member, BoundedLoad, HASH_SEED};
use super::pick::{PickContext, Strategy};
use crate::registry::Member;

/// Table sizes used: primes, as Maglev requires. The first at least the configured size and
/// the member count is taken.
const PRIMES: [u64; 8] = [
    251, 4_093, 65_537, 131_071, 262_139, 524_287, 1_048_573, 4_194_301,
];

const OFFSET_SEED: u64 = HASH_SEED ^ 0x6f66_6673_6574; // "offset"
const SKIP_SEED: u64 = HASH_SEED ^ 0x736b_6970; // "skip"

/// Maglev consistent hashing with weights (a member fills table slots in proportion to its
/// weight). Requests without a key are spread at random.
#[derive(Debug, Clone, Copy)]
pub struct Maglev {
    table_size: u64,
    bound: Option<BoundedLoad>,
}

impl Default for Maglev {
    fn default() -> Self {
        Self::new()
    }
}

impl Maglev {
    /// A 65 537-entry table (Envoy's default), 4 bytes an entry.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            table_size: 65_537,
            bound: None,
        }
    }

    /// Asks for at least `entries` table entries; rounded up to the next size in
    /// 251, 4 093, 65 537, 131 071, … 4 194 301.
    #[must_use]
    pub const fn table_size(mut self, entries: u64) -> Self {
        self.table_size = entries;
        self
    }

    /// Passes over members above the load bound.
    #[must_use]
    pub const fn bounded_load(mut self, bound: BoundedLoad) -> Self {
        self.bound = Some(bound);
        self
    }

    fn size_for(&self, members: usize) -> u64 {
        let want = self.table_size.max(members as u64);
        PRIMES
            .iter()
            .copied()
            .find(|&p| p >= want)
            .unwrap_or(PRIMES[PRIMES.len() - 1])
    }
}

/// The Maglev lookup table: entry `key % len` names a member index.
pub struct MaglevTable {
    lookup: Box<[u32]>,
}

impl fmt::Debug for MaglevTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevTable")
            .field("entries", &self.lookup.len())
            .finish()
    }
}

impl Strategy for Maglev {
    type Table = MaglevTable;

    fn name(&self) -> &'static str {
        "maglev"
    }

    #[allow(clippy::cast_possible_truncation)]
    fn build(&self, members: &[Arc<Member>]) -> MaglevTable {
        let n = members.len();
        let m = self.size_for(n);
        let mut lookup = vec![u32::MAX; m as usize];
        if n == 0 {
            return MaglevTable {
                lookup: lookup.into_boxed_slice(),
            };
        }
        let perm: Vec<(u64, u64)> = members
            .iter()
            .map(|mem| {
                let offset = hash_member(mem, 0, OFFSET_SEED) % m;
                let skip = hash_member(mem, 0, SKIP_SEED) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let weights: Vec<u64> = members.iter().map(|x| u64::from(x.weight())).collect();
        let max_w = weights.iter().copied().max().unwrap_or(1).max(1);
        let mut next = vec![0u64; n];
        let mut credit = vec![0u64; n];
        let mut filled = 0u64;
        'rounds: loop {
            for i in 0..n {
                credit[i] += weights[i];
                while credit[i] >= max_w {
                    credit[i] -= max_w;
                    // the member's next preferred entry that is still free
                    loop {
                        let (offset, skip) = perm[i];
                        let c = (offset + next[i] * skip) % m;
                        next[i] += 1;
                        if lookup[c as usize] == u32::MAX {
                            lookup[c as usize] = i as u32;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == m {
                        break 'rounds;
                    }
                }
            }
        }
        MaglevTable {
            lookup: lookup.into_boxed_slice(),
        }
    }

    #[allow(clippy::cast_possible_truncation)]
    fn pick(
        &self,
        table: &MaglevTable,
        members: &[Arc<Member>],
        cx: &PickContext<'_>,
    ) -> Option<usize> {
        let len = table.lookup.len();
        if len == 0 || members.is_empty() {
            return None;
        }
        let key = cx.key().unwrap_or_else(|| fastrand::u64(..));
        let start = (key % len as u64) as usize;
        let walk = (0..len).map(|off| table.lookup[(start + off) % len] as usize);
        if cx.excludes_nothing() && self.bound.is_none() {
            return walk.clone().next().filter(|&i| i < members.len());
        }
        first_admitted(
            walk.filter(|&i| i < members.len()),
            members,
            cx,
            self.bound.as_ref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_size_is_a_prime_at_least_the_member_count() {
        let m = Maglev::new();
        assert_eq!(m.size_for(2), 65_537);
        assert_eq!(m.size_for(70_000), 131_071);
        assert_eq!(Maglev::new().table_size(10).size_for(2), 251);
    }
}
