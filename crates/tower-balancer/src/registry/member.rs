//! A member of a balancer: identity, endpoint, weight, priority set, admin state and health.
//!
//! Why atomics for the settings: a weight or state change builds a new snapshot, but requests
//! already holding the member's `Arc` (and status pages) should read the current value, and the
//! member's live [`MemberStats`] must survive every rebuild. So the `Arc<Member>` is the stable
//! identity and a snapshot is only a view over members.

use std::borrow::Borrow;
use std::fmt;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::Uri;

use super::error::RegistryError;
use super::stats::{MemberStats, RegistryLoad};

/// The largest weight a member may have (Apache's `loadfactor` stops at 100; nginx has no
/// limit; 65 535 keeps strategy tables bounded).
pub const MAX_WEIGHT: u32 = 65_535;

/// A ramp of 1000 permille: full weight.
pub(crate) const FULL_RAMP: u16 = 1000;

/// The longest member id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// A member's id, which doubles as its route name (`node1`), as Apache's `route=` does.
///
/// Ids are 1 to [`MAX_ID_LEN`] bytes of `A-Z a-z 0-9 . _ ~ -`, so an id can be written into a
/// cookie, a URL or a log line without escaping, and can never carry CR, LF or a separator.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(Arc<str>);

impl MemberId {
    /// Validates `id` and makes a member id of it.
    ///
    /// # Errors
    /// [`RegistryError::InvalidId`] when `id` is empty, longer than [`MAX_ID_LEN`] or holds a
    /// byte outside `A-Z a-z 0-9 . _ ~ -`.
    pub fn new(id: impl AsRef<str>) -> Result<Self, RegistryError> {
        let id = id.as_ref();
        if Self::is_valid(id) {
            Ok(Self(Arc::from(id)))
        } else {
            Err(RegistryError::InvalidId(escape_for_message(id)))
        }
    }

    /// Whether `id` would be accepted by [`MemberId::new`].
    #[must_use]
    pub fn is_valid(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
    }

    /// An id from text the caller built only from valid characters, within the length.
    #[cfg_attr(not(feature = "dns"), allow(dead_code))]
    pub(crate) fn from_checked(id: String) -> Self {
        debug_assert!(Self::is_valid(&id), "{id}");
        Self(Arc::from(id))
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keeps error messages printable and short whatever the input was.
fn escape_for_message(id: &str) -> String {
    let mut out: String = id
        .chars()
        .take(MAX_ID_LEN)
        .flat_map(char::escape_default)
        .collect();
    if id.chars().count() > MAX_ID_LEN {
        out.push_str("...");
    }
    out
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MemberId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for MemberId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for MemberId {
    type Error = RegistryError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

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
    const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Active,
            1 => Self::Standby,
            2 => Self::Draining,
            _ => Self::Disabled,
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
    /// [`Registry::set_health`](super::Registry::set_health) and the initial [`MemberSpec`].
    Operator = 1,
    /// Active health probes.
    Probe = 2,
    /// Passive outlier ejection from the failures real requests see.
    Outlier = 4,
}

/// The description of a member to insert: what an operator or a discovery source says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub(crate) id: MemberId,
    pub(crate) endpoint: Uri,
    pub(crate) weight: u32,
    pub(crate) priority: u16,
    pub(crate) state: AdminState,
    pub(crate) health: Health,
    pub(crate) redirect: Option<MemberId>,
}

impl MemberSpec {
    /// A member with weight 1, priority set 0, active and healthy.
    #[must_use]
    pub const fn new(id: MemberId, endpoint: Uri) -> Self {
        Self {
            id,
            endpoint,
            weight: 1,
            priority: 0,
            state: AdminState::Active,
            health: Health::Healthy,
            redirect: None,
        }
    }

    /// Sets the redirect route (Apache `redirect=`): requests pinned to this member go to
    /// that member instead whenever this one cannot serve, for a planned migration.
    #[must_use]
    pub fn redirect(mut self, route: MemberId) -> Self {
        self.redirect = Some(route);
        self
    }

    /// Sets the weight (Apache `loadfactor`); checked against 1..=[`MAX_WEIGHT`] on insert.
    #[must_use]
    pub const fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the priority set (Apache `lbset`): lower sets are used first.
    #[must_use]
    pub const fn priority(mut self, priority: u16) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the initial admin state.
    #[must_use]
    pub const fn state(mut self, state: AdminState) -> Self {
        self.state = state;
        self
    }

    /// Sets the initial health.
    #[must_use]
    pub const fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// The member's id.
    #[must_use]
    pub const fn id(&self) -> &MemberId {
        &self.id
    }

    /// The member's endpoint.
    #[must_use]
    pub const fn endpoint(&self) -> &Uri {
        &self.endpoint
    }
}

/// Checks a weight against 1..=[`MAX_WEIGHT`].
pub(crate) fn check_weight(id: &MemberId, weight: u32) -> Result<u32, RegistryError> {
    if (1..=MAX_WEIGHT).contains(&weight) {
        Ok(weight)
    } else {
        Err(RegistryError::InvalidWeight {
            id: id.clone(),
            weight,
        })
    }
}

/// A member of the registry. Cheap to share as `Arc<Member>`; the picked member travels in
/// request and response extensions this way.
pub struct Member {
    serial: u64,
    id: MemberId,
    endpoint: Uri,
    weight: AtomicU32,
    priority: AtomicU16,
    state: AtomicU8,
    health: AtomicU8,
    redirect: ArcSwapOption<MemberId>,
    /// Slow-start ramp in permille of the weight (1000 = full weight).
    ramp: AtomicU16,
    stats: MemberStats,
}

impl Member {
    pub(crate) fn new(serial: u64, spec: MemberSpec, load: Arc<RegistryLoad>) -> Self {
        Self {
            serial,
            id: spec.id,
            endpoint: spec.endpoint,
            weight: AtomicU32::new(spec.weight),
            priority: AtomicU16::new(spec.priority),
            state: AtomicU8::new(spec.state as u8),
            health: AtomicU8::new(match spec.health {
                Health::Healthy => 0,
                Health::Unhealthy => HealthSource::Operator as u8,
            }),
            redirect: ArcSwapOption::from(spec.redirect.map(Arc::new)),
            ramp: AtomicU16::new(FULL_RAMP),
            stats: MemberStats::new(load),
        }
    }

    /// A number unique to this member within its registry, never reused: a member removed and
    /// inserted again under the same id is a different member with fresh stats.
    #[must_use]
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// The member's id, which is also its route name.
    #[must_use]
    pub fn id(&self) -> &MemberId {
        &self.id
    }

    /// Where requests for this member go.
    #[must_use]
    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// The current weight.
    #[must_use]
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// The weight strategies use now, in thousandths: `weight × 1000` normally, scaled by the
    /// slow-start ramp while the member ramps up after joining or coming back (at least 1).
    /// Only ratios between members matter, so the unit cancels out.
    #[must_use]
    pub fn effective_weight(&self) -> u32 {
        let ramp = u32::from(self.ramp.load(Ordering::Relaxed).min(FULL_RAMP));
        // weight <= 65 535 and ramp <= 1000: the product fits in u32
        (self.weight() * ramp).max(1)
    }

    /// The slow-start ramp in permille of the weight; 1000 when not ramping.
    #[must_use]
    pub fn ramp_permille(&self) -> u16 {
        self.ramp.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ramp_permille(&self, permille: u16) {
        self.ramp.store(permille.min(FULL_RAMP), Ordering::Relaxed);
    }

    /// The current priority set (lower is used first).
    #[must_use]
    pub fn priority(&self) -> u16 {
        self.priority.load(Ordering::Relaxed)
    }

    /// The current admin state.
    #[must_use]
    pub fn state(&self) -> AdminState {
        AdminState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// The current health: unhealthy while any [`HealthSource`] says so.
    #[must_use]
    pub fn health(&self) -> Health {
        if self.health.load(Ordering::Acquire) == 0 {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }

    /// Whether `source` currently says this member is down.
    #[must_use]
    pub fn is_down_by(&self, source: HealthSource) -> bool {
        self.health.load(Ordering::Acquire) & source as u8 != 0
    }

    /// The redirect route (Apache `redirect=`), if set.
    #[must_use]
    pub fn redirect(&self) -> Option<MemberId> {
        self.redirect.load().as_deref().cloned()
    }

    pub(crate) fn set_redirect(&self, route: Option<MemberId>) {
        self.redirect.store(route.map(Arc::new));
    }

    /// Live counters and latency.
    #[must_use]
    pub fn stats(&self) -> &MemberStats {
        &self.stats
    }

    /// Whether a request pinned to this member by a sticky route may be sent to it: active,
    /// standby or draining, and healthy.
    #[must_use]
    pub fn serves_pinned(&self) -> bool {
        self.state() != AdminState::Disabled && self.health() == Health::Healthy
    }

    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    pub(crate) fn set_priority(&self, priority: u16) {
        self.priority.store(priority, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, state: AdminState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Records `source`'s verdict; returns whether the overall health changed.
    pub(crate) fn set_health_by(&self, source: HealthSource, health: Health) -> bool {
        let before = self.health();
        match health {
            Health::Healthy => self.health.fetch_and(!(source as u8), Ordering::AcqRel),
            Health::Unhealthy => self.health.fetch_or(source as u8, Ordering::AcqRel),
        };
        before != self.health()
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .field("weight", &self.weight())
            .field("priority", &self.priority())
            .field("state", &self.state())
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_route_characters_only() {
        assert!(MemberId::new("node1").is_ok());
        assert!(MemberId::new("a.b_c~d-e").is_ok());
        for bad in [
            "",
            "node 1",
            "node1\r\n",
            "n;1",
            "n=1",
            "nöde",
            "a\0b",
            "a,b",
            "\"q\"",
        ] {
            assert!(
                matches!(MemberId::new(bad), Err(RegistryError::InvalidId(_))),
                "{bad:?} accepted"
            );
        }
        assert!(MemberId::new("x".repeat(MAX_ID_LEN)).is_ok());
        assert!(MemberId::new("x".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn invalid_id_message_is_escaped_and_bounded() {
        let err = MemberId::new(format!("a\r\n{}", "x".repeat(5000))).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\r') && !msg.contains('\n'));
        assert!(msg.len() < 300, "{}", msg.len());
    }

    #[test]
    fn weight_bounds_are_checked() {
        let id = MemberId::new("n").unwrap();
        assert!(check_weight(&id, 0).is_err());
        assert!(check_weight(&id, MAX_WEIGHT + 1).is_err());
        assert_eq!(check_weight(&id, 1).unwrap(), 1);
        assert_eq!(check_weight(&id, MAX_WEIGHT).unwrap(), MAX_WEIGHT);
    }
}
