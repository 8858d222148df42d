//! Consistent hashing on a ring (Ketama; Envoy `RING_HASH`, nginx `hash ... consistent`).
//!
//! Why: with a key (a user id, a session, a path) every balancer instance sends the same key to
//! the same member, and adding or removing one member of N moves only about 1/N of the keys.

use std::fmt;
use std::sync::Arc;

use super::hash::{first_admitted, hash_member, BoundedLoad, HASH_SEED};
use super::pick::{PickContext, Strategy};
use crate::registry::Member;

/// Ring points per member aimed for before the ring size limits apply.
const POINTS_PER_MEMBER: usize = 100;

/// Consistent hashing on a ring of virtual points, each member getting points in proportion to
/// its weight. Requests without a key are spread at random. Points are hashed from member ids
/// with a fixed seed, so instances with the same member ids agree.
#[derive(Debug, Clone, Copy)]
pub struct RingHash {
    min_ring: usize,
    max_ring: usize,
    bound: Option<BoundedLoad>,
}

impl Default for RingHash {
    fn default() -> Self {
        Self::new()
    }
}

impl RingHash {
    /// A ring of 100 points a member, at least 1 024 and at most 65 536 points.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            min_ring: 1024,
            max_ring: 1 << 16,
            bound: None,
        }
    }

    /// Sets the ring size limits (12 bytes a point). A larger ring spreads keys more evenly.
    #[must_use]
    pub const fn ring_size(mut self, min: usize, max: usize) -> Self {
        self.min_ring = min;
        self.max_ring = if max < min { min } else { max };
        self
    }

    /// Passes over members above the load bound.
    #[must_use]
    pub const fn bounded_load(mut self, bound: BoundedLoad) -> Self {
        self.bound = Some(bound);
        self
    }
}

/// The ring: sorted point hashes and the member index owning each.
pub struct Ring {
    hashes: Box<[u64]>,
    owners: Box<[u32]>,
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

    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn build(&self, members: &[Arc<Member>]) -> Ring {
        let n = members.len();
        let target = (n * POINTS_PER_MEMBER).clamp(self.min_ring.max(1), self.max_ring.max(1));
        let total: u64 = members
            .iter()
            .map(|m| u64::from(m.weight()))
            .sum::<u64>()
            .max(1);
        let mut points: Vec<(u64, u32)> = Vec::with_capacity(target + n);
        for (i, m) in members.iter().enumerate() {
            let share = u64::from(m.weight()) as f64 / total as f64;
            let count = ((share * target as f64).round() as u64).max(1);
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
        Ring {
            hashes: hashes.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
        }
    }

    fn pick(&self, ring: &Ring, members: &[Arc<Member>], cx: &PickContext<'_>) -> Option<usize> {
        let len = ring.hashes.len();
        if len == 0 {
            return None;
        }
        let key = cx.key().unwrap_or_else(|| fastrand::u64(..));
        let start = ring.hashes.partition_point(|&h| h < key);
        let walk = (0..len).map(|off| ring.owners[(start + off) % len] as usize);
        if cx.tried().is_empty() && self.bound.is_none() {
            return walk.clone().next();
        }
        first_admitted(walk, members, cx, self.bound.as_ref())
    }
}
