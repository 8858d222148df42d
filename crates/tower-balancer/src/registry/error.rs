//! Errors from changing the registry.

use super::id::{MemberId, MAX_ID_LEN};
use super::member::MAX_WEIGHT;

/// A registry change that was refused; the registry is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The id is empty, too long or holds a character a route may not carry.
    #[error("invalid member id \"{0}\": use 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ ~ -")]
    InvalidId(String),
    /// A member with this id is already registered.
    #[error("member {0} is already registered")]
    DuplicateId(MemberId),
    /// No member has this id.
    #[error("no member {0} is registered")]
    UnknownMember(String),
    /// The weight is outside 1..=65535.
    #[error("member {id}: weight {weight} is outside 1..={MAX_WEIGHT}")]
    InvalidWeight {
        /// The member.
        id: MemberId,
        /// The refused weight.
        weight: u32,
    },
}
