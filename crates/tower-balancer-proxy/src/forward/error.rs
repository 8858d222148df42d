//! How forwarding failures are reported.

use std::error::Error as StdError;

use hyper_util::client::legacy::Error as ClientError;
use tower_balancer::failover::ReplayError;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};

/// The forwarder was called without a picked member: the balance layer must be outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no member was picked for this request (put BalanceLayer outside the forwarder)")]
pub struct NotPicked;

/// What stage a client error happened at, for failover and passive health.
pub(crate) fn classify(e: &ClientError) -> UpstreamErrorKind {
    if e.is_connect() {
        return UpstreamErrorKind::Connect;
    }
    let Some(source) = e.source() else {
        return UpstreamErrorKind::Reset;
    };
    for err in tower_balancer::error::sources(source) {
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

pub(crate) fn upstream(e: ClientError) -> UpstreamError {
    let kind = classify(&e);
    UpstreamError::new(kind, e)
}
