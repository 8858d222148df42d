//! Which response statuses count against a member.

use http::StatusCode;

/// A set of response statuses that count as a member's failure for passive health and stats.
///
/// The default is every 5xx except 501 (Not Implemented) and 505 (HTTP Version Not
/// Supported), which answer the request rather than report the member's trouble (HAProxy's
/// `observe layer7` makes the same exception).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureStatuses {
    bits: [u64; 10],
}

impl Default for FailureStatuses {
    fn default() -> Self {
        let mut s = Self::none();
        let mut code = 500;
        while code < 600 {
            if code != 501 && code != 505 {
                s = s.with_code(code);
            }
            code += 1;
        }
        s
    }
}

impl FailureStatuses {
    /// No status counts as a failure.
    #[must_use]
    pub const fn none() -> Self {
        Self { bits: [0; 10] }
    }

    const fn with_code(mut self, code: u16) -> Self {
        let c = code as usize;
        if c < 640 {
            self.bits[c / 64] |= 1 << (c % 64);
        }
        self
    }

    /// Adds a status.
    #[must_use]
    pub const fn with(self, status: StatusCode) -> Self {
        self.with_code(status.as_u16())
    }

    /// Removes a status.
    #[must_use]
    pub const fn without(mut self, status: StatusCode) -> Self {
        let c = status.as_u16() as usize;
        if c < 640 {
            self.bits[c / 64] &= !(1 << (c % 64));
        }
        self
    }

    /// Whether `status` counts as a failure.
    #[must_use]
    pub const fn contains(&self, status: StatusCode) -> bool {
        let c = status.as_u16() as usize;
        c < 640 && self.bits[c / 64] & (1 << (c % 64)) != 0
    }

    /// The statuses that count, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = StatusCode> + '_ {
        (100..640u16)
            .filter(|&c| self.bits[usize::from(c) / 64] & (1 << (c % 64)) != 0)
            .filter_map(|c| StatusCode::from_u16(c).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counts_5xx_but_not_501_and_505() {
        let s = FailureStatuses::default();
        assert!(s.contains(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(s.contains(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!s.contains(StatusCode::NOT_IMPLEMENTED));
        assert!(!s.contains(StatusCode::HTTP_VERSION_NOT_SUPPORTED));
        assert!(!s.contains(StatusCode::NOT_FOUND));
        assert!(!s.contains(StatusCode::OK));
        let custom = FailureStatuses::none().with(StatusCode::NOT_FOUND);
        assert!(custom.contains(StatusCode::NOT_FOUND));
        assert!(!custom
            .without(StatusCode::NOT_FOUND)
            .contains(StatusCode::NOT_FOUND));
    }
}
