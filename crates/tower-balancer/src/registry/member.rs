//! A member of a balancer: identity, endpoint, weight, priority set, admin state and health.
//!
//! Why atomics for the settings: a weight or state change builds a new snapshot, but requests
//! already holding the member's `Arc` (and status pages) should read the current value, and the
//! member's live [`MemberStats`] must survive every rebuild. So the `Arc<Member>` is the stable
//! identity and a snapshot is only a view over members.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use http::{HeaderValue, Uri};

use super::error::RegistryError;
pub(super) use super::id::MemberId;
use super::load::RegistryLoad;
use super::spec::MemberSpec;
pub use super::state::{AdminState, Health, HealthSource};
use super::stats::MemberStats;

/// The largest weight a member may have (Apache's `loadfactor` stops at 100; nginx has no
/// limit; 65 535 keeps strategy tables bounded).
pub const MAX_WEIGHT: u32 = 65_535;

/// A ramp of 1000 permille: full weight.
pub(crate) const FULL_RAMP: u16 = 1000;

/// `host[:port]` of `endpoint`, the port left out when it is the scheme's default; with a
/// TLS name, that name in place of the endpoint's host, so `Host` and SNI agree (servers
/// that select a virtual host by SNI answer 421 when they differ).
fn host_header(endpoint: &Uri, tls_name: Option<&str>) -> Option<HeaderValue> {
    let endpoint_host = endpoint.host()?;
    let host: Cow<'_, str> = match tls_name {
        // an IPv6 address as the name: written in brackets, as in a URI
        Some(name) if name.contains(':') => format!("[{name}]").into(),
        Some(name) => name.into(),
        None => endpoint_host.into(),
    };
    let host = host.as_ref();
    let secure = matches!(endpoint.scheme_str(), Some("https" | "wss"));
    let value = match endpoint.port_u16() {
        Some(443) if secure => HeaderValue::from_str(host),
        Some(80) if !secure => HeaderValue::from_str(host),
        Some(port) => HeaderValue::from_str(&format!("{host}:{port}")),
        None => HeaderValue::from_str(host),
    };
    value.ok()
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
    /// `Host` for requests to the endpoint, made once (not per request).
    host: Option<HeaderValue>,
    tls_name: Option<Arc<str>>,
    weight: AtomicU32,
    priority: AtomicU16,
    state: AtomicU8,
    /// Counts the admin state's changes: a drain started before the member came back (and
    /// left again) must not remove it on the first drain's deadline.
    state_epoch: AtomicU32,
    health: AtomicU8,
    redirect: ArcSwapOption<MemberId>,
    /// Slow-start ramp in permille of the weight (1000 = full weight).
    ramp: AtomicU16,
    /// The passive ejection is for connect failures: a passing probe may end it.
    ejected_unreachable: AtomicBool,
    /// The most requests in flight at once (Apache `max=`); 0 for no limit.
    max: AtomicU32,
    /// Removed from its registry: a slot it frees goes to no new request.
    retired: AtomicBool,
    /// What the health probe has seen of it: kept here, not in the probe's task, so a
    /// checker restarted by a reload goes on where the last one was.
    probe: Mutex<ProbeMemo>,
    stats: MemberStats,
}

impl Member {
    pub(crate) fn new(serial: u64, spec: MemberSpec, load: Arc<RegistryLoad>) -> Self {
        Self {
            serial,
            id: spec.id,
            host: host_header(&spec.endpoint, spec.tls_name.as_deref()),
            endpoint: spec.endpoint,
            tls_name: spec.tls_name,
            weight: AtomicU32::new(spec.weight),
            priority: AtomicU16::new(spec.priority),
            state: AtomicU8::new(spec.state as u8),
            state_epoch: AtomicU32::new(0),
            health: AtomicU8::new(
                match spec.health {
                    Health::Healthy => 0,
                    Health::Unhealthy => HealthSource::Operator as u8,
                } | if load.new_members_down() {
                    // a health checker whose members start down: until its first probe
                    HealthSource::Probe as u8
                } else {
                    0
                },
            ),
            redirect: ArcSwapOption::from(spec.redirect.map(Arc::new)),
            ramp: AtomicU16::new(FULL_RAMP),
            ejected_unreachable: AtomicBool::new(false),
            max: AtomicU32::new(spec.max),
            retired: AtomicBool::new(false),
            probe: Mutex::new(ProbeMemo::default()),
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

    /// The `Host` a request to this member carries when the client's own is not passed on:
    /// the endpoint's host (or its [`tls_name`](Self::tls_name), so `Host` and SNI agree),
    /// with the port unless it is the scheme's default (as HTTP clients write it, RFC 9110
    /// section 7.2). `None` for an endpoint without an authority.
    #[must_use]
    pub fn host_header(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    /// The name the member proves over TLS when it is not the endpoint's host
    /// ([`MemberSpec::tls_name`]).
    #[must_use]
    pub fn tls_name(&self) -> Option<&str> {
        self.tls_name.as_deref()
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

    /// What the health probe has seen of this member.
    pub(crate) fn probe_memo(&self) -> ProbeMemo {
        *self.probe.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_probe_memo(&self, memo: ProbeMemo) {
        *self.probe.lock().unwrap_or_else(PoisonError::into_inner) = memo;
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

    /// Whether the member's passive ejection, if any, is for connect failures alone, which
    /// any passing probe may end (one for failed requests only a probe that saw it down).
    #[must_use]
    pub fn probe_may_readmit(&self) -> bool {
        self.ejected_unreachable.load(Ordering::Acquire)
    }

    pub(crate) fn set_ejected_unreachable(&self, unreachable: bool) {
        self.ejected_unreachable
            .store(unreachable, Ordering::Release);
    }

    /// The redirect route (Apache `redirect=`), if set.
    #[must_use]
    pub fn redirect(&self) -> Option<MemberId> {
        self.redirect.load().as_deref().cloned()
    }

    pub(crate) fn set_redirect(&self, route: Option<MemberId>) {
        self.redirect.store(route.map(Arc::new));
    }

    /// The member as it would be declared now: id, endpoint, TLS name, weight, set, admin
    /// state and redirect (healthy unless the operator marked it down). Compare it with a
    /// declaration read again (a reloaded file) to change only what changed.
    #[must_use]
    pub fn spec(&self) -> MemberSpec {
        MemberSpec {
            id: self.id.clone(),
            endpoint: self.endpoint.clone(),
            weight: self.weight(),
            priority: self.priority(),
            state: self.state(),
            health: if self.is_down_by(HealthSource::Operator) {
                Health::Unhealthy
            } else {
                Health::Healthy
            },
            redirect: self.redirect(),
            tls_name: self.tls_name.clone(),
            max: self.max_in_flight(),
        }
    }

    /// The most requests this member may have in flight at once (Apache `max=`, HAProxy
    /// `maxconn`); 0 for no limit. Requests beyond it wait in the balancer's queue.
    #[must_use]
    pub fn max_in_flight(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Whether the member has as many requests in flight as its limit allows.
    #[must_use]
    pub fn is_full(&self) -> bool {
        let max = self.max_in_flight();
        max != 0 && self.stats.in_flight() >= u64::from(max)
    }

    pub(crate) fn set_max_in_flight(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Whether the member was removed from its registry (requests may still be finishing).
    #[must_use]
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether a new (unpinned) request may be sent to this member: in the registry, active
    /// or standby, and healthy.
    #[must_use]
    pub fn takes_new(&self) -> bool {
        !self.is_retired()
            && matches!(self.state(), AdminState::Active | AdminState::Standby)
            && self.health() == Health::Healthy
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

    /// [`serves_pinned`](Self::serves_pinned) with health set aside, as in panic mode: not
    /// disabled.
    pub(crate) fn serves_pinned_in_panic(&self) -> bool {
        self.state() != AdminState::Disabled
    }

    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    pub(crate) fn set_priority(&self, priority: u16) {
        self.priority.store(priority, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, state: AdminState) {
        if self.state.swap(state as u8, Ordering::AcqRel) != state as u8 {
            self.state_epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// How many times the admin state has changed.
    pub(crate) fn state_epoch(&self) -> u32 {
        self.state_epoch.load(Ordering::Acquire)
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

/// What the health probe has seen of a member (see [`Member::probe_memo`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProbeMemo {
    /// A probe has had an answer from it (members that start down are down until then).
    pub(crate) probed: bool,
    /// Passes in a row, and failures in a row.
    pub(crate) passes: u32,
    pub(crate) fails: u32,
    /// When the last probe was sent.
    pub(crate) last: Option<tokio::time::Instant>,
    /// The probe's drain status drained it.
    pub(crate) drained_by_probe: bool,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .field("tls_name", &self.tls_name)
            .field("weight", &self.weight())
            .field("priority", &self.priority())
            .field("state", &self.state())
            .field("health", &self.health())
            .field("max", &self.max_in_flight())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_bounds_are_checked() {
        let id = MemberId::new("n").unwrap();
        assert!(check_weight(&id, 0).is_err());
        assert!(check_weight(&id, MAX_WEIGHT + 1).is_err());
        assert_eq!(check_weight(&id, 1).unwrap(), 1);
        assert_eq!(check_weight(&id, MAX_WEIGHT).unwrap(), MAX_WEIGHT);
    }

    #[test]
    fn host_header_drops_only_the_default_port() {
        let host = |u: &str| {
            host_header(&u.parse().unwrap(), None).map(|h| h.to_str().unwrap().to_owned())
        };
        assert_eq!(
            host("http://abc.com:9763/").as_deref(),
            Some("abc.com:9763")
        );
        assert_eq!(host("http://abc.com:80").as_deref(), Some("abc.com"));
        assert_eq!(host("https://xyz.com:443/is").as_deref(), Some("xyz.com"));
        assert_eq!(host("https://xyz.com:80").as_deref(), Some("xyz.com:80"));
        assert_eq!(host("http://abc.com:443").as_deref(), Some("abc.com:443"));
        assert_eq!(host("https://xyz.com").as_deref(), Some("xyz.com"));
        assert_eq!(host("http://[::1]:9763").as_deref(), Some("[::1]:9763"));
        assert_eq!(
            host("http://user@abc.com:8080").as_deref(),
            Some("abc.com:8080")
        );
        assert_eq!(host("/relative"), None);
    }

    #[test]
    fn a_tls_name_is_the_host_too() {
        let host = |u: &str, name: &str| {
            host_header(&u.parse().unwrap(), Some(name)).map(|h| h.to_str().unwrap().to_owned())
        };
        assert_eq!(
            host("https://10.0.0.1:9443", "is.test").as_deref(),
            Some("is.test:9443")
        );
        assert_eq!(
            host("https://10.0.0.1", "is.test").as_deref(),
            Some("is.test")
        );
        assert_eq!(
            host("https://10.0.0.1:8443", "fd00::1").as_deref(),
            Some("[fd00::1]:8443")
        );
        // a name that cannot be a header value: no Host from the member (it fails at connect)
        assert_eq!(host("https://10.0.0.1:8443", "bad\nname"), None);
        assert_eq!(host("/relative", "is.test"), None);
    }
}
