//! How forwarding failures are reported.

use tower_balancer::failover::ReplayError;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};

/// The forwarder was called without a picked member: the balance layer must be outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no member was picked for this request (put BalanceLayer outside the forwarder)")]
pub struct NotPicked;

/// A request that never left for the member: its connection closed before it went out.
#[derive(Debug, thiserror::Error)]
#[error("the member's connection closed before the request was sent")]
pub(crate) struct NotSent(#[source] pub(crate) hyper::Error);

/// What stage a failed exchange reached, for failover and passive health.
pub(crate) fn classify(e: &hyper::Error) -> UpstreamErrorKind {
    for err in tower_balancer::error::sources(e) {
        if matches!(
            err.downcast_ref::<ReplayError>(),
            Some(ReplayError::Client(_))
        ) {
            return UpstreamErrorKind::ClientBody;
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_user() {
                return UpstreamErrorKind::ClientBody;
            }
            if h.is_timeout() {
                return UpstreamErrorKind::Timeout;
            }
            if h.is_parse() {
                return UpstreamErrorKind::Protocol;
            }
        }
    }
    UpstreamErrorKind::Reset
}

/// A failed exchange whose request may have reached the member.
pub(crate) fn from_hyper(e: hyper::Error) -> UpstreamError {
    let kind = classify(&e);
    UpstreamError::new(kind, e)
}
