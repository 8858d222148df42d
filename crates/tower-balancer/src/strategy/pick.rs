//! The `Strategy` trait and what a pick is given.

use std::fmt;
use std::sync::Arc;

use crate::registry::Member;

/// How many members one request can have tried; failover caps attempts at this.
pub const MAX_TRIED: usize = 16;

/// A member-selection strategy. Implement it to add your own; the shipped ones are in this
/// module.
///
/// A strategy is asked to [`build`](Strategy::build) a table for every tier whenever the
/// registry publishes a snapshot (off the request path), and to [`pick`](Strategy::pick) from
/// that table on every request (on the request path: no locks, no allocation). Priority sets
/// and hot standby are handled outside the strategy: it only ever sees one tier's members,
/// all of them eligible when the table was built.
///
/// ```
/// use std::sync::Arc;
/// use tower_balancer::registry::Member;
/// use tower_balancer::strategy::{PickContext, Strategy};
///
/// /// Always the first member that was not tried yet.
/// struct First;
///
/// impl Strategy for First {
///     type Table = ();
///     fn name(&self) -> &'static str { "first" }
///     fn build(&self, _members: &[Arc<Member>]) {}
///     fn pick(&self, _: &(), members: &[Arc<Member>], cx: &PickContext<'_>) -> Option<usize> {
///         members.iter().position(|m| !cx.is_excluded(m))
///     }
/// }
/// ```
pub trait Strategy: Send + Sync + 'static {
    /// What the strategy precomputes per tier (and any per-tier mutable state, as atomics).
    type Table: Send + Sync + 'static;

    /// A short name for status pages (`"round-robin"`).
    fn name(&self) -> &'static str;

    /// Precomputes the table for one tier. `members` is never empty and is sorted by id.
    fn build(&self, members: &[Arc<Member>]) -> Self::Table;

    /// Picks the index of a member in `members` (the slice `table` was built from) that
    /// `cx` does not exclude, or `None` when every member is excluded. Called again with the
    /// picked member excluded, it yields the next candidate, so failover walks the
    /// strategy's order.
    fn pick(
        &self,
        table: &Self::Table,
        members: &[Arc<Member>],
        cx: &PickContext<'_>,
    ) -> Option<usize>;
}

/// What one pick is given besides the members: the request's hash key, the members this
/// request already tried, and whether members that are full (at their
/// [`max_in_flight`](Member::max_in_flight)) must be skipped too.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    key: Option<u64>,
    tried: &'a Tried,
    limits: bool,
}

impl<'a> PickContext<'a> {
    /// A context with an optional hash key and the set of members already tried.
    #[must_use]
    pub const fn new(key: Option<u64>, tried: &'a Tried) -> Self {
        Self {
            key,
            tried,
            limits: false,
        }
    }

    /// Whether members at their limit of requests in flight are excluded too (the balance
    /// layer sets it when any member of the snapshot has a limit).
    #[must_use]
    pub const fn with_limits(mut self, limits: bool) -> Self {
        self.limits = limits;
        self
    }

    /// Whether members at their limit are excluded.
    #[must_use]
    pub const fn has_limits(&self) -> bool {
        self.limits
    }

    /// Whether no member is excluded at all: a strategy may take its first choice as is.
    #[must_use]
    pub const fn excludes_nothing(&self) -> bool {
        self.tried.is_empty() && !self.limits
    }

    /// The request's hash key, for consistent-hashing strategies.
    #[must_use]
    pub const fn key(&self) -> Option<u64> {
        self.key
    }

    /// The members this request already tried.
    #[must_use]
    pub const fn tried(&self) -> &Tried {
        self.tried
    }

    /// Whether `member` must not be picked.
    #[must_use]
    pub fn is_excluded(&self, member: &Member) -> bool {
        self.tried.contains(member) || (self.limits && member.is_full())
    }
}

/// The members one request has tried, inline (no allocation), up to [`MAX_TRIED`].
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried {
    serials: [u64; MAX_TRIED],
    len: u8,
}

impl Tried {
    /// An empty set.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            serials: [0; MAX_TRIED],
            len: 0,
        }
    }

    /// Adds a member; returns `false` when the set is full (the member is then not added).
    pub fn insert(&mut self, member: &Member) -> bool {
        if self.contains(member) {
            return true;
        }
        let len = usize::from(self.len);
        if len == MAX_TRIED {
            return false;
        }
        self.serials[len] = member.serial();
        self.len += 1;
        true
    }

    /// Whether `member` was tried.
    #[must_use]
    pub fn contains(&self, member: &Member) -> bool {
        self.serials[..usize::from(self.len)].contains(&member.serial())
    }

    /// How many members were tried.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no member was tried.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(&self.serials[..usize::from(self.len)])
            .finish()
    }
}

/// The first member from `start` (wrapping) that `cx` does not exclude: the fallback every
/// strategy uses once its own order is exhausted.
pub(crate) fn first_available(
    members: &[Arc<Member>],
    start: usize,
    cx: &PickContext<'_>,
) -> Option<usize> {
    let n = members.len();
    (0..n)
        .map(|off| (start + off) % n)
        .find(|&i| !cx.is_excluded(&members[i]))
}

/// Greatest common divisor, for reducing weights.
pub(crate) const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Two numbers from one random draw, uniform in `0..n` and `0..m` (n, m ≤ 2^32): one
/// thread-local RNG access instead of two, which is a third of a P2C pick's instructions.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn two_below(n: usize, m: u64) -> (usize, u64) {
    let r = fastrand::u64(..);
    let hi = r >> 32;
    let lo = r & 0xffff_ffff;
    (((hi * n as u64) >> 32) as usize, (lo * m) >> 32)
}
