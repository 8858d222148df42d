//! Consistent hashing on a ring (Ketama; Envoy `RING_HASH`, nginx `hash ... consistent`).
//!
//! Why: with a key (a user id, a session, a path) every balancer instance sends the same key to
//! the same member, and adding or removing one member of N moves only about 1/N of the keys.

use std::fmt;
use std::sync::Arc;

use super::hash::{first_admitted, hash_member, BoundedLoad, HASH_SEED};
use super::pick::{PickContext, Strategy};
use crate::registry::Member;

/// Consistent hashing on a ring of virtual points: each member gets `points_per_weight ×
/// weight` points, hashed from its id with a fixed seed, so instances with the same member ids
/// agree and a member's points never depend on who else is on the ring (adding one member of
/// N moves about 1/N of the keys, all of them to the new member). Requests without a key are
/// spread at random.
///
/// Memory is 12 bytes a point: 100 points a member is 1.2 KB a member. Past `max_ring` points
/// every member's count is scaled down, which moves more keys on a change; raise the limit or
/// lower the points for very large clusters.
#[derive(Debug, Clone, Copy)]
pub struct RingHash {
    points_per_weight: u32,
    max_ring: usize,
    bound: Option<BoundedLoad>,
}

impl Default for RingHash {
    fn default() -> Self {
        Self::new()
    }
}

impl RingHash {
    /// 100 points per unit of weight, at most 2^20 points in all.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            points_per_weight: 100,
            max_ring: 1 << 20,
            bound: None,
        }
    }

    /// Sets the points per unit of weight (at least 1). More points spread keys more evenly:
    /// with `p` points the busiest member sees about `1 + 2/sqrt(p)` times its share.
    #[must_use]
    pub const fn points_per_weight(mut self, points: u32) -> Self {
        self.points_per_weight = if points == 0 { 1 } else { points };
        self
    }

    /// Sets the most points the ring may hold in all.
    #[must_use]
    pub const fn max_ring(mut self, points: usize) -> Self {
        self.max_ring = points;
        self
    }

    /// Passes over members above the load bound.
    #[must_use]
    pub const fn bounded_load(mut self, bound: BoundedLoad) -> Self {
        self.bound = Some(bound);
        self
    }
}

/// The ring: sorted point hashes, the member index owning each, and a bucket index over the
/// hashes' top bits so a lookup searches a handful of points instead of the whole ring.
pub struct Ring {
    hashes: Box<[u64]>,
    owners: Box<[u32]>,
    /// `buckets[b]` is the first point whose hash has top bits `>= b`; one extra at the end.
    buckets: Box<[u32]>,
    shift: u32,
}

impl Ring {
    fn new(hashes: Vec<u64>, owners: Vec<u32>) -> Self {
        // about 4 points a bucket, at least 1 bucket
        let bits = (hashes.len() / 4)
            .max(1)
            .next_power_of_two()
            .trailing_zeros();
        let shift = 64 - bits;
        let count = 1usize << bits;
        let mut buckets = Vec::with_capacity(count + 1);
        let mut i = 0usize;
        for b in 0..count as u64 {
            while i < hashes.len() && (hashes[i].checked_shr(shift).unwrap_or(0)) < b {
                i += 1;
            }
            buckets.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        buckets.push(u32::try_from(hashes.len()).unwrap_or(u32::MAX));
        Self {
            hashes: hashes.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
            buckets: buckets.into_boxed_slice(),
            shift,
        }
    }

    /// The index of the first point at or after `key`, wrapping to 0.
    fn position(&self, key: u64) -> usize {
        let b = key.checked_shr(self.shift).unwrap_or(0) as usize;
        let lo = self.buckets[b] as usize;
        let hi = self.buckets[b + 1] as usize;
        let pos = lo + self.hashes[lo..hi].partition_point(|&h| h < key);
        if pos == self.hashes.len() {
            0
        } else {
            pos
        }
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.hashes.len())
            .finish()
    }
}

impl Strategy for RingHash {
    type Table = Ring;

    fn name(&self) -> &'static str {
        "ring-hash"
    }

    fn build(&self, members: &[Arc<Member>]) -> Ring {
        let per: Vec<u64> = members
            .iter()
            .map(|m| u64::from(m.weight()) * u64::from(self.points_per_weight))
            .collect();
        let total: u64 = per.iter().sum();
        let cap = (self.max_ring as u64).max(members.len() as u64);
        let mut points: Vec<(u64, u32)> =
            Vec::with_capacity(usize::try_from(total.min(cap)).unwrap_or(0));
        for (i, m) in members.iter().enumerate() {
            let count = if total > cap {
                (per[i] * cap / total).max(1)
            } else {
                per[i]
            };
            for replica in 0..count {
                points.push((
                    hash_member(m, replica, HASH_SEED),
                    u32::try_from(i).unwrap_or(0),
                ));
            }
        }
        // ties broken by owner index, and indices follow id order: the same on every instance
        points.sort_unstable();
        let (hashes, owners) = points.into_iter().unzip::<_, _, Vec<_>, Vec<_>>();
        Ring::new(hashes, owners)
    }

    fn pick(&self, ring: &Ring, members: &[Arc<Member>], cx: &PickContext<'_>) -> Option<usize> {
        let len = ring.hashes.len();
        if len == 0 {
            return None;
        }
        let key = cx.key().unwrap_or_else(|| fastrand::u64(..));
        let start = ring.position(key);
        let walk = (0..len).map(|off| ring.owners[(start + off) % len] as usize);
        if cx.excludes_nothing() && self.bound.is_none() {
            return walk.clone().next();
        }
        first_admitted(walk, members, cx, self.bound.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lookup_agrees_with_a_full_binary_search() {
        let mut hashes: Vec<u64> = (0..5000u64)
            .map(|i| crate::strategy::hash_key(&i.to_le_bytes()))
            .collect();
        hashes.sort_unstable();
        let owners = vec![0; hashes.len()];
        let ring = Ring::new(hashes.clone(), owners);
        for k in (0..20_000u64)
            .map(|i| crate::strategy::hash_key(&(i + 1_000_000).to_le_bytes()))
            .chain([0, u64::MAX, hashes[0], hashes[4999]])
        {
            let full = hashes.partition_point(|&h| h < k) % hashes.len();
            assert_eq!(ring.position(k), full, "key {k}");
        }
        let one = Ring::new(vec![42], vec![0]);
        assert_eq!(one.position(0), 0);
        assert_eq!(one.position(43), 0);
    }
}
