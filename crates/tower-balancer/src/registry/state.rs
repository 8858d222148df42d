//! What a member may do and whether it is up: its admin state (the operator's) and its
//! health (the sources that say it is down), kept apart from [`Member`](super::Member) so
//! the words operators and pages use are in one place.
//!
//! Why separate sources: a member is healthy when no source says it is down, so an active
//! probe, passive outlier ejection and an operator never undo each other's verdicts.

use std::fmt;

/// What the operator allows a member to do, as Apache's balancer-manager names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum AdminState {
    /// Takes new and sticky requests.
    #[default]
    Active = 0,
    /// Hot standby: takes new requests only when no active member of any priority set is
    /// eligible (Apache `status=+H`).
    Standby = 1,
    /// Takes no new sessions, but still serves requests pinned to it by a sticky route
    /// (Apache `status=+N`).
    Draining = 2,
    /// Takes nothing (Apache `status=+D`).
    Disabled = 3,
}

impl AdminState {
    pub(super) const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Active,
            1 => Self::Standby,
            2 => Self::Draining,
            _ => Self::Disabled,
        }
    }

    /// Reads Apache's status flags (`+D`, `+H`, `+N`, `-D` …) or our words (`active`,
    /// `disabled`, `standby`, `draining`), in any case; `None` for anything else.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "active" | "-d" | "-h" | "-n" => Some(Self::Active),
            "+d" | "d" | "disabled" | "+s" | "stopped" => Some(Self::Disabled),
            "+h" | "h" | "standby" | "hot-standby" => Some(Self::Standby),
            "+n" | "n" | "drain" | "draining" => Some(Self::Draining),
            _ => None,
        }
    }

    /// The lower-case name used in status pages and configuration.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Standby => "standby",
            Self::Draining => "draining",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What health checking last concluded about a member, kept apart from [`AdminState`] so a
/// probe never overrides an operator's decision and an operator never hides a dead member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Health {
    /// The member may take requests.
    #[default]
    Healthy = 0,
    /// The member is down (failed probes or ejected by passive detection).
    Unhealthy = 1,
}

impl Health {
    /// The lower-case name used in status pages.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who says a member is down. A member is healthy when no source says it is down, so an
/// active probe, passive outlier ejection and an operator never undo each other's verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HealthSource {
    /// [`Registry::set_health`](super::Registry::set_health) and the initial [`MemberSpec`](super::MemberSpec).
    Operator = 1,
    /// Active health probes.
    Probe = 2,
    /// Passive outlier ejection from the failures real requests see.
    Outlier = 4,
}
