//! The verdict on one attempt at a member: kept beside the member's stats, which record it,
//! so the registry depends on nothing above it; [`crate::outcome`] re-exports both types and
//! adds the observer trait the balance layer calls.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// Why an attempt counted against a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The connection could not be made; nothing was sent.
    Connect,
    /// The member did not answer in time.
    Timeout,
    /// The connection was reset or closed before a complete response.
    Reset,
    /// The member spoke broken HTTP.
    Protocol,
    /// The member answered with a status configured as a failure (by default 5xx other than
    /// 501 and 505, which are answers about the request).
    Status(StatusCode),
    /// Another error from the inner service.
    Other,
}

impl FailureKind {
    pub(crate) fn code(self) -> u16 {
        match self {
            Self::Connect => 1,
            Self::Timeout => 2,
            Self::Reset => 3,
            Self::Protocol => 4,
            Self::Other => 5,
            Self::Status(s) => s.as_u16(),
        }
    }

    pub(crate) fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::Connect,
            2 => Self::Timeout,
            3 => Self::Reset,
            4 => Self::Protocol,
            5 => Self::Other,
            c => Self::Status(StatusCode::from_u16(c).ok()?),
        })
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect => f.write_str("connect failure"),
            Self::Timeout => f.write_str("timeout"),
            Self::Reset => f.write_str("connection reset"),
            Self::Protocol => f.write_str("protocol error"),
            Self::Status(s) => write!(f, "status {}", s.as_u16()),
            Self::Other => f.write_str("error"),
        }
    }
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The member answered with a status that is not a failure.
    Success {
        /// Time from sending to response headers.
        latency: Duration,
    },
    /// The attempt counts against the member.
    Failure {
        /// What went wrong.
        kind: FailureKind,
        /// Time to response headers, when the member answered at all.
        latency: Option<Duration>,
    },
    /// Something went wrong that is not the member's fault (the client's body failed, the
    /// client went away); it counts as a request but never as a failure.
    NotCounted,
}

impl Outcome {
    /// Whether this outcome counts against the member.
    #[must_use]
    pub const fn is_failure(&self) -> bool {
        matches!(self, Self::Failure { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_round_trip_through_their_code() {
        for k in [
            FailureKind::Connect,
            FailureKind::Timeout,
            FailureKind::Reset,
            FailureKind::Protocol,
            FailureKind::Other,
            FailureKind::Status(StatusCode::BAD_GATEWAY),
        ] {
            assert_eq!(FailureKind::from_code(k.code()), Some(k));
        }
        assert_eq!(FailureKind::from_code(0), None);
    }
}
