//! Which response statuses count against a member.

use http::StatusCode;

/// A set of response statuses that count as a member's failure for passive health and stats.
///
/// The default is the gateway failures, 502, 503 and 504 (Envoy's
/// `consecutive_gateway_failure`): a member's own word that it, or what stands behind it,
/// cannot serve. Not 500: an application answers 500 for a request it cannot handle, so
/// any client that finds such a URL could eject a healthy member (and move every session
/// on it) by asking for it five times; nginx's `max_fails` and Apache's balancer count no
/// status unless told to either ([`server_errors`](Self::server_errors) for every 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureStatuses {
    bits: [u64; 10],
}

impl Default for FailureStatuses {
    fn default() -> Self {
        Self::none()
            .with(StatusCode::BAD_GATEWAY)
            .with(StatusCode::SERVICE_UNAVAILABLE)
            .with(StatusCode::GATEWAY_TIMEOUT)
    }
}

impl FailureStatuses {
    /// No status counts as a failure.
    #[must_use]
    pub const fn none() -> Self {
        Self { bits: [0; 10] }
    }

    /// Every 5xx but 501 (Not Implemented) and 505 (HTTP Version Not Supported), which
    /// answer the request rather than report the member's trouble (HAProxy's `observe
    /// layer7`): a client that finds a URL answering 500 can then count against a member.
    #[must_use]
    pub const fn server_errors() -> Self {
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

    /// The statuses of both sets.
    #[must_use]
    pub const fn union(mut self, other: &Self) -> Self {
        let mut i = 0;
        while i < self.bits.len() {
            self.bits[i] |= other.bits[i];
            i += 1;
        }
        self
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
    fn default_counts_the_gateway_failures_and_server_errors_every_5xx_but_501_and_505() {
        let s = FailureStatuses::default();
        for c in [502, 503, 504] {
            assert!(s.contains(StatusCode::from_u16(c).unwrap()), "{c}");
        }
        for c in [200, 404, 500, 501, 505] {
            assert!(!s.contains(StatusCode::from_u16(c).unwrap()), "{c}");
        }
        let all = FailureStatuses::server_errors();
        assert!(all.contains(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(all.contains(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!all.contains(StatusCode::NOT_IMPLEMENTED));
        assert!(!all.contains(StatusCode::HTTP_VERSION_NOT_SUPPORTED));
        assert!(!all.contains(StatusCode::NOT_FOUND));
        let custom = FailureStatuses::none().with(StatusCode::NOT_FOUND);
        assert!(custom.contains(StatusCode::NOT_FOUND));
        assert!(!custom
            .without(StatusCode::NOT_FOUND)
            .contains(StatusCode::NOT_FOUND));
        let both = s.union(&custom);
        assert!(both.contains(StatusCode::NOT_FOUND) && both.contains(StatusCode::BAD_GATEWAY));
        assert!(!both.contains(StatusCode::INTERNAL_SERVER_ERROR));
    }
}
