//! What a client is told when the stack fails, decided in one place.
//!
//! Why one module above the layers: each layer owns its error types (the balance layer's
//! [`BalanceError`], failover's [`FailoverError`], the transport's [`UpstreamError`]), and no
//! inner layer may know an outer one's. Only here, above them all, are they read together
//! to pick a status; the server (or your own) calls [`error_status`]. [`find_in_chain`] is the
//! one walk along an error's sources that every layer uses.

mod chain;

use std::error::Error as StdError;

use http::StatusCode;

pub use chain::{find_in_chain, sources, DisplayChain};

use crate::balance::BalanceError;
use crate::failover::{FailoverError, NotRetried};
use crate::upstream::UpstreamError;

/// The status a client should get for an error from the balancer stack: 503 when no member
/// could take the request, 504 when a member or the failover deadline timed out, 400 when
/// the client's own body failed, 502 for every other upstream failure. The error's text is
/// for logs, never for the client.
#[must_use]
pub fn error_status(err: &(dyn StdError + 'static)) -> StatusCode {
    for e in sources(err) {
        if e.is::<BalanceError>() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if let Some(f) = e.downcast_ref::<FailoverError>() {
            if f.reason() == NotRetried::DeadlineExceeded && e.source().is_none() {
                return StatusCode::GATEWAY_TIMEOUT;
            }
        }
    }
    find_in_chain::<UpstreamError>(err).map_or(StatusCode::BAD_GATEWAY, UpstreamError::status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamErrorKind;
    use crate::BoxError;

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
