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

/// How hyper says its connection task went away with a request it had not sent.
const DISPATCH_GONE: &str = "dispatch task is gone";

/// What stage a failed exchange reached, for failover and passive health.
pub(crate) fn classify(e: &hyper::Error) -> UpstreamErrorKind {
    for err in tower_balancer::error::sources(e) {
        if matches!(
            err.downcast_ref::<ReplayError>(),
            Some(ReplayError::Client(_))
        ) {
            return UpstreamErrorKind::ClientBody;
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if is_refusal(h2) {
                return UpstreamErrorKind::Refused;
            }
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_user() {
                // hyper's connection task ended with the request waiting for a stream (an
                // HTTP/2 member's graceful close while its concurrent streams were taken):
                // it never went out (hostile round 6: answered 400 as the client's fault)
                if h.to_string().starts_with(DISPATCH_GONE) {
                    return UpstreamErrorKind::Refused;
                }
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

/// An HTTP/2 member's word that it processed none of the request: a `GOAWAY` whose last
/// stream is below the request's, or a `REFUSED_STREAM` reset (RFC 9113 §6.8, §8.7).
///
/// A `GOAWAY` says so whatever its error code: a graceful close (`NO_ERROR`) crossing the
/// request, or a member's own error or limit (`INTERNAL_ERROR`, `ENHANCE_YOUR_CALM`). The
/// `h2` crate hands the member's `GOAWAY` only to the streams above its last stream, and to
/// requests sent after it came; the streams at or below it, which the member may have
/// processed, end with the connection's close, as a broken pipe or their own reset.
fn is_refusal(e: &h2::Error) -> bool {
    e.is_remote()
        && (e.is_go_away() || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)))
}

/// A failed exchange whose request may have reached the member.
pub(crate) fn from_hyper(e: hyper::Error) -> UpstreamError {
    let kind = classify(&e);
    UpstreamError::new(kind, e)
}
