//! How long and how many requests may wait for a member with room.
//!
//! Why the defaults are bounded: a request waiting for a full member holds its client's
//! connection and a little memory. With no bound, a burst against members at their limit
//! would pile up requests without end, which is the overload the limit is there to stop.

use std::time::Duration;

/// The default longest wait for a member with room: 10 s (HAProxy's `timeout queue` is
/// often set near this; nginx's `queue` defaults to 60 s).
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default most requests waiting per balancer.
pub const DEFAULT_QUEUE_LENGTH: u32 = 1024;

/// The queue of requests waiting for a member with room, used only when members have a
/// [`max_in_flight`](crate::registry::MemberSpec::max_in_flight): at most `length`
/// requests wait, each at most `timeout`, then it is answered 503 with `Retry-After`
/// ([`BalanceError::QueueTimeout`](super::BalanceError::QueueTimeout),
/// [`BalanceError::QueueFull`](super::BalanceError::QueueFull)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    pub(crate) length: u32,
    pub(crate) timeout: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueSettings {
    /// [`DEFAULT_QUEUE_LENGTH`] requests, each waiting at most [`DEFAULT_QUEUE_TIMEOUT`].
    #[must_use]
    pub const fn new() -> Self {
        Self {
            length: DEFAULT_QUEUE_LENGTH,
            timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }

    /// The most requests that may wait at once; 0 refuses at once when every member is full.
    #[must_use]
    pub const fn length(mut self, length: u32) -> Self {
        self.length = length;
        self
    }

    /// The longest a request waits for a member with room.
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most requests that may wait at once.
    #[must_use]
    pub const fn max_waiting(&self) -> u32 {
        self.length
    }

    /// The longest wait.
    #[must_use]
    pub const fn wait_limit(&self) -> Duration {
        self.timeout
    }
}
