//! Why a probe failed, so that the log line that takes a member out says it: refused,
//! timed out, the wrong status, the page without its text.

use crate::BoxError;

/// A failed health check, as [`HttpProbe`](super::HttpProbe) and [`TcpProbe`](super::TcpProbe)
/// report it (`Err`); the checker counts it toward `fall` and logs it when the member goes
/// down. A probe of your own may return `Ok(ProbeResult::Fail)` instead: it counts the same,
/// without a reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeFailure {
    /// The request got no response: refused, reset, a TLS failure.
    #[error("no answer")]
    Unreachable(#[source] BoxError),
    /// The member answered with a status outside the expected range.
    #[error("status {status}, expected {low}-{high}")]
    Status {
        /// What it answered.
        status: u16,
        /// The lowest status accepted.
        low: u16,
        /// The highest.
        high: u16,
    },
    /// The page did not contain the expected text (in its first 64 KiB).
    #[error("the page does not contain the expected text")]
    Body,
    /// The member's URL has no host to connect to.
    #[error("the member's URL has no host")]
    NoHost,
    /// A TCP connect failed.
    #[error("connect to {addr}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
