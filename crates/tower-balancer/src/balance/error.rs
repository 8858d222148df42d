//! Errors of the balance layer.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    /// Every member that could take the request was at its limit of requests in flight and
    /// the queue already held as many requests as it may.
    #[error("every member is at its limit and the queue is full")]
    QueueFull,
    /// The request waited the whole queue timeout for a member with room.
    #[error("no member had room within the queue timeout of {0:?}")]
    QueueTimeout(Duration),
}

impl BalanceError {
    /// Whether the members are only busy (queue full or timed out), so the client may try
    /// again shortly: answered 503 with `Retry-After`.
    #[must_use]
    pub const fn is_busy(&self) -> bool {
        matches!(self, Self::QueueFull | Self::QueueTimeout(_))
    }
}

impl From<PickError> for BalanceError {
    fn from(e: PickError) -> Self {
        match e {
            PickError::NotAttached => Self::NotAttached,
            PickError::NoEligibleMember => Self::NoEligibleMember,
            PickError::Busy => Self::QueueFull,
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
