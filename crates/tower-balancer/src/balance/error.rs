//! Errors of the balance layer.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::registry::{Member, MemberId};
use crate::strategy::PickError;
use crate::BoxError;

/// The balance layer could not send the request anywhere. Answered as 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BalanceError {
    /// No member may take the request now.
    #[error("no eligible member")]
    NoEligibleMember,
    /// The request was pinned strictly to a member that cannot serve it.
    #[error("pinned member {0} cannot serve")]
    PinnedUnavailable(MemberId),
    /// The strategy is not attached to the registry the snapshot came from.
    #[error("strategy is not attached to this registry")]
    NotAttached,
}

impl From<PickError> for BalanceError {
    fn from(e: PickError) -> Self {
        match e {
            PickError::NotAttached => Self::NotAttached,
            PickError::NoEligibleMember => Self::NoEligibleMember,
        }
    }
}

/// An attempt on a member failed with an error from the inner service. Carries the member, so
/// failover knows whom not to try again.
#[derive(Debug)]
pub struct AttemptError {
    member: Arc<Member>,
    source: BoxError,
}

impl AttemptError {
    pub(crate) fn new(member: Arc<Member>, source: BoxError) -> Self {
        Self { member, source }
    }

    /// The member the attempt was sent to.
    #[must_use]
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// The inner service's error.
    #[must_use]
    pub fn inner(&self) -> &BoxError {
        &self.source
    }

    /// Unwraps the inner service's error.
    #[must_use]
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt on member {} failed", self.member.id())
    }
}

impl StdError for AttemptError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}
