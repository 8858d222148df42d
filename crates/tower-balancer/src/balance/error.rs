//! Errors of the balance layer, and the status a client should see for any error of the stack.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;

use crate::failover::{FailoverError, NotRetried};
use crate::registry::{Member, MemberId};
use crate::strategy::PickError;
use crate::upstream::find_upstream_error;
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

/// The status a client should get for an error from the balancer stack: 503 when no member
/// could take the request, 504 when a member or the failover deadline timed out, 400 when the client's own body failed,
/// 502 for every other upstream failure. The error's text is for logs, never for the client.
#[must_use]
pub fn error_status(err: &(dyn StdError + 'static)) -> StatusCode {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<BalanceError>().is_some() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if let Some(f) = e.downcast_ref::<FailoverError>() {
            if f.reason() == NotRetried::DeadlineExceeded && e.source().is_none() {
                return StatusCode::GATEWAY_TIMEOUT;
            }
        }
        cur = e.source();
    }
    find_upstream_error(err).map_or(
        StatusCode::BAD_GATEWAY,
        crate::upstream::UpstreamError::status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{UpstreamError, UpstreamErrorKind};

    #[test]
    fn statuses_follow_the_cause() {
        let e: BoxError = Box::new(BalanceError::NoEligibleMember);
        assert_eq!(error_status(&*e), StatusCode::SERVICE_UNAVAILABLE);
        let e: BoxError = Box::new(UpstreamError::from_kind(UpstreamErrorKind::Timeout));
        assert_eq!(error_status(&*e), StatusCode::GATEWAY_TIMEOUT);
        let e: BoxError = "anything".into();
        assert_eq!(error_status(&*e), StatusCode::BAD_GATEWAY);
    }
}
