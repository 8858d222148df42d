//! What can go wrong on the member client's own HTTP/1.1 path.

use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};

/// A failed exchange with a member over the client's own HTTP/1.1 path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum H1Error {
    /// Reading from or writing to the member failed.
    #[error("member connection: {0}")]
    Io(#[from] std::io::Error),
    /// The member closed the connection before its answer was complete.
    #[error("the member closed the connection before its answer was complete")]
    Incomplete,
    /// The answer head did not parse.
    #[error("malformed answer head: {0}")]
    Head(httparse::Error),
    /// The answer head is larger than `MAX_MEMBER_HEAD_BYTES`.
    #[error("the member's answer head is too large")]
    HeadTooLarge,
    /// A status outside 100-999.
    #[error("invalid status {0}")]
    Status(u16),
    /// A field name or value http cannot hold.
    #[error("invalid answer field")]
    Field,
    /// The body's framing is unreadable (lengths, transfer coding, chunks).
    #[error("invalid answer framing: {0}")]
    Framing(&'static str),
    /// More interim (1xx) answers than any real exchange sends.
    #[error("too many interim answers")]
    TooManyInterim,
}

impl H1Error {
    /// What stage the failure reached, for failover and passive health: a malformed answer
    /// is the member's protocol error; anything else broke an exchange that may have
    /// reached the member.
    pub(crate) fn into_upstream(self) -> UpstreamError {
        let kind = match &self {
            Self::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => UpstreamErrorKind::Timeout,
            Self::Io(_) | Self::Incomplete => UpstreamErrorKind::Reset,
            _ => UpstreamErrorKind::Protocol,
        };
        UpstreamError::new(kind, self)
    }
}
