//! When and how often the active checker probes, and how many verdicts move a member.
//!
//! Why a file of its own: the settings are the checker's whole public surface beside the
//! checker itself, with HAProxy's names and defaults, and read apart from its loop.

use std::time::Duration;

use crate::registry::Health;

/// When and how often to probe, with HAProxy's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSettings {
    interval: Duration,
    fast_interval: Duration,
    pub(super) timeout: Duration,
    jitter: f64,
    pub(super) rise: u32,
    pub(super) fall: u32,
    pub(super) initial: Health,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeSettings {
    /// Every 2 s (1 s while a member is changing state), 1 s timeout, up to 10% earlier at
    /// random, 2 passes to come up, 3 failures to go down, members start healthy.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            jitter: 0.1,
            rise: 2,
            fall: 3,
            initial: Health::Healthy,
        }
    }

    /// The probe interval (HAProxy `inter`, Apache `hcinterval`).
    #[must_use]
    pub const fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The interval while a member is between states (HAProxy `fastinter`); never longer
    /// than the interval.
    #[must_use]
    pub const fn fast_interval(mut self, interval: Duration) -> Self {
        self.fast_interval = interval;
        self
    }

    /// How long one probe may take; a probe that takes longer fails.
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Probes run up to this fraction of the interval early, at random, so members are not
    /// probed in lock step (0.0–0.5).
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 0.5)
        } else {
            0.0
        };
        self
    }

    /// Passes in a row to come up (HAProxy `rise`, Apache `hcpasses`), at least 1.
    #[must_use]
    pub const fn rise(mut self, n: u32) -> Self {
        self.rise = if n == 0 { 1 } else { n };
        self
    }

    /// Failures in a row to go down (HAProxy `fall`, Apache `hcfails`), at least 1.
    #[must_use]
    pub const fn fall(mut self, n: u32) -> Self {
        self.fall = if n == 0 { 1 } else { n };
        self
    }

    /// The health members have before their first probe, which is sent at once: healthy
    /// (default), or unhealthy until it passes (one that fails it needs `rise` passes, as
    /// any member that is down).
    #[must_use]
    pub const fn initial(mut self, health: Health) -> Self {
        self.initial = health;
        self
    }

    pub(super) fn wait(&self, transitioning: bool) -> Duration {
        let base = if transitioning {
            self.fast_interval.min(self.interval)
        } else {
            self.interval
        };
        base.mul_f64(1.0 - self.jitter * fastrand::f64())
    }
}
