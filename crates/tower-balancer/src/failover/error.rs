//! Errors and signals of the failover layer.

use std::error::Error as StdError;
use std::fmt;

use crate::BoxError;

/// Why a failed attempt was not tried again on another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotRetried {
    /// The request may have reached the member and its method is not idempotent.
    NotIdempotent,
    /// The request body outgrew the replay cap after part of it was sent.
    BodyOverCap,
    /// The retry budget is spent: the cluster is failing too much to retry.
    BudgetExhausted,
    /// The attempt limit was reached, or no other member was eligible.
    AttemptsExhausted,
    /// The overall deadline passed.
    DeadlineExceeded,
    /// The failure was the client's (its body failed).
    ClientError,
    /// The balancer had no place for another member connection
    /// ([`UpstreamErrorKind::Capacity`](crate::upstream::UpstreamErrorKind::Capacity)):
    /// another member would move the request's session.
    Capacity,
}

impl fmt::Display for NotRetried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotIdempotent => {
                "not retried: the method is not idempotent and the request may have been sent"
            }
            Self::BodyOverCap => "not retried: the request body is larger than the replay cap",
            Self::BudgetExhausted => "not retried: retry budget exhausted",
            Self::AttemptsExhausted => "not retried: no attempts or members left",
            Self::DeadlineExceeded => "not retried: deadline exceeded",
            Self::ClientError => "not retried: the client's request failed",
            Self::Capacity => "not retried: the balancer had no place for a member connection",
        })
    }
}

/// The last attempt's error, with why failover stopped and what the earlier attempts failed
/// with. Also put in the response extensions (as [`NotRetried`]) when the last attempt was a
/// response with a `fail_on_status` status.
#[derive(Debug)]
pub struct FailoverError {
    reason: NotRetried,
    attempts: usize,
    source: Option<BoxError>,
    earlier: Vec<String>,
}

impl FailoverError {
    pub(crate) const fn new(reason: NotRetried, attempts: usize, source: Option<BoxError>) -> Self {
        Self {
            reason,
            attempts,
            source,
            earlier: Vec::new(),
        }
    }

    /// With what the attempts before the last failed, oldest first.
    pub(crate) fn set_earlier(&mut self, earlier: Vec<String>) {
        self.earlier = earlier;
    }

    /// What each attempt before the last failed with, oldest first (the last attempt's
    /// error is the [`source`](StdError::source)): a log line of the error names every
    /// member tried, not only the last.
    #[must_use]
    pub fn earlier(&self) -> &[String] {
        &self.earlier
    }

    /// Why failover stopped.
    #[must_use]
    pub const fn reason(&self) -> NotRetried {
        self.reason
    }

    /// How many attempts were made.
    #[must_use]
    pub const fn attempts(&self) -> usize {
        self.attempts
    }
}

impl fmt::Display for FailoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request failed after {} attempt(s); {}",
            self.attempts, self.reason
        )?;
        if !self.earlier.is_empty() {
            f.write_str(" (before: ")?;
            for (i, e) in self.earlier.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                f.write_str(e)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl StdError for FailoverError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
