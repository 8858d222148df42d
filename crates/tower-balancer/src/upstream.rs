//! The error a forwarding service reports when a member could not answer.
//!
//! Why one shared type: the balance layer must tell passive health whether a failure was the
//! member's, the failover layer must know whether the request may have reached the member
//! (a connect failure is safe to retry for any method, anything later only for idempotent
//! ones), and the server must map it to 502 or 504 without echoing upstream text. A transport
//! (such as `tower-balancer-proxy`'s forward service) returns this type; the layers find it by
//! downcasting the boxed error, and treat any other error as "may have been sent".

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

use crate::outcome::FailureKind;
use crate::BoxError;

/// What stage an upstream failure happened at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpstreamErrorKind {
    /// No connection could be made (refused, unreachable, TLS handshake failed, connect
    /// timeout): nothing of the request reached the member.
    Connect,
    /// The member did not answer within the timeout after the request was sent.
    Timeout,
    /// The connection broke after (part of) the request was written.
    Reset,
    /// The member's response was not valid HTTP.
    Protocol,
    /// The client's request body failed while it was being sent: the client's fault, never
    /// counted against the member.
    ClientBody,
    /// The member answered a request to switch protocols without switching (a WebSocket
    /// handshake answered `200`), where the client's protocol cannot carry that answer (an
    /// HTTP/2 extended CONNECT, whose success means the tunnel is open): a valid answer to
    /// a request it need not grant, so never counted against the member.
    NotSwitched,
    /// The member refused the request before processing any of it: an HTTP/2 `GOAWAY` that
    /// left the request's stream out, as a member ending a connection gracefully (nginx
    /// after `keepalive_requests`) does to streams that crossed it, or `REFUSED_STREAM`
    /// (RFC 9113 §8.7, "can be safely retried"). Safe to send again for every method, and
    /// never counted against the member.
    Refused,
    /// The balancer itself could not open a connection to the member (the process or the
    /// system is out of file descriptors): nothing was sent, and the member is not at fault,
    /// so it is never counted against it; the client gets 503.
    Local,
    /// The balancer had no place under its own connection caps for another member
    /// connection: nothing was sent, never counted against the member, and not sent to
    /// another member either, which would move a session pinned to this one (a hostile
    /// test, round 14, saw 114 of 300 pinned requests re-pinned so); the client gets 503.
    Capacity,
}

/// A failure talking to a member.
#[derive(Debug)]
pub struct UpstreamError {
    kind: UpstreamErrorKind,
    source: Option<BoxError>,
}

impl UpstreamError {
    /// Wraps `source` as a failure of `kind`.
    pub fn new(kind: UpstreamErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// A failure of `kind` with no underlying error.
    #[must_use]
    pub const fn from_kind(kind: UpstreamErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// What stage it failed at.
    #[must_use]
    pub const fn kind(&self) -> UpstreamErrorKind {
        self.kind
    }

    /// Whether the member may have acted on the request. A connect failure proves that
    /// nothing reached it, and a refusal that it processed nothing.
    #[must_use]
    pub const fn maybe_sent(&self) -> bool {
        !matches!(
            self.kind,
            UpstreamErrorKind::Connect
                | UpstreamErrorKind::Local
                | UpstreamErrorKind::Refused
                | UpstreamErrorKind::Capacity
        )
    }

    /// How passive health should count it: `None` when it is not the member's fault.
    #[must_use]
    pub const fn failure_kind(&self) -> Option<FailureKind> {
        match self.kind {
            UpstreamErrorKind::Connect => Some(FailureKind::Connect),
            UpstreamErrorKind::Timeout => Some(FailureKind::Timeout),
            UpstreamErrorKind::Reset => Some(FailureKind::Reset),
            UpstreamErrorKind::Protocol => Some(FailureKind::Protocol),
            UpstreamErrorKind::ClientBody
            | UpstreamErrorKind::NotSwitched
            | UpstreamErrorKind::Refused
            | UpstreamErrorKind::Local
            | UpstreamErrorKind::Capacity => None,
        }
    }

    /// The status a client should see: 504 for a timeout, 400 for the client's own body,
    /// 503 when the balancer itself is out of descriptors, 502 otherwise.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        match self.kind {
            UpstreamErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamErrorKind::ClientBody => StatusCode::BAD_REQUEST,
            UpstreamErrorKind::Local | UpstreamErrorKind::Capacity => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            UpstreamErrorKind::Connect => "could not connect to member",
            UpstreamErrorKind::Timeout => "member timed out",
            UpstreamErrorKind::Reset => "connection to member broke",
            UpstreamErrorKind::Protocol => "member sent an invalid response",
            UpstreamErrorKind::ClientBody => "client request body failed",
            UpstreamErrorKind::NotSwitched => "member did not switch protocols",
            UpstreamErrorKind::Refused => "member refused the request before processing it",
            UpstreamErrorKind::Local => "the balancer could not open a connection to the member",
            UpstreamErrorKind::Capacity => {
                "the balancer had no place under its connection caps for a member connection"
            }
        })
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Finds the [`UpstreamError`] in an error or its chain of sources.
#[must_use]
pub fn find_upstream_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a UpstreamError> {
    crate::error::find_in_chain(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connect_failures_prove_nothing_was_sent() {
        assert!(!UpstreamError::from_kind(UpstreamErrorKind::Connect).maybe_sent());
        for k in [
            UpstreamErrorKind::Timeout,
            UpstreamErrorKind::Reset,
            UpstreamErrorKind::Protocol,
            UpstreamErrorKind::ClientBody,
            UpstreamErrorKind::NotSwitched,
        ] {
            assert!(UpstreamError::from_kind(k).maybe_sent());
        }
    }

    #[test]
    fn client_body_failures_never_count_against_the_member() {
        let e = UpstreamError::from_kind(UpstreamErrorKind::ClientBody);
        assert_eq!(e.failure_kind(), None);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_balancers_own_shortage_is_a_503_never_held_against_the_member() {
        let e = UpstreamError::from_kind(UpstreamErrorKind::Local);
        assert_eq!(e.failure_kind(), None);
        assert!(!e.maybe_sent());
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_member_that_does_not_switch_is_a_502_not_held_against_it() {
        let e = UpstreamError::from_kind(UpstreamErrorKind::NotSwitched);
        assert_eq!(e.failure_kind(), None);
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn upstream_error_is_found_through_wrappers() {
        #[derive(Debug)]
        struct Wrap(UpstreamError);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let boxed: BoxError = Box::new(Wrap(UpstreamError::from_kind(UpstreamErrorKind::Timeout)));
        let found = find_upstream_error(&*boxed).unwrap();
        assert_eq!(found.kind(), UpstreamErrorKind::Timeout);
    }
}
