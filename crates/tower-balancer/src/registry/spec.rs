//! What an operator or a discovery source says a member is, before it joins: the
//! declaration is kept apart from the live [`Member`](super::Member) so that sources,
//! files and reloads compare and pass around plain values.

use std::sync::Arc;

use http::Uri;

use super::id::MemberId;
use super::member::{AdminState, Health};

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
    pub(crate) tls_name: Option<Arc<str>>,
    pub(crate) max: u32,
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
            tls_name: None,
            max: 0,
        }
    }

    /// What is wrong with `endpoint` as a member's URL, if anything, said after the URL
    /// (`` `ftp://h` is not an http:// or https:// URL with a host``): not `http`/`https`
    /// with a host, a port outside 1–65535, a user name or password (never sent), or a query
    /// (never sent). Files and discovery sources check with it before a member is made.
    #[must_use]
    pub fn endpoint_problem(endpoint: &Uri) -> Option<&'static str> {
        if !matches!(endpoint.scheme_str(), Some("http" | "https")) || endpoint.host().is_none() {
            return Some("is not an http:// or https:// URL with a host");
        }
        if !port_in_range(endpoint) {
            return Some("has a port outside 1-65535");
        }
        if endpoint
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
        {
            return Some("carries a user name or password, which is never sent");
        }
        if endpoint.query().is_some() {
            return Some("has a query, which is never sent: give the base path only");
        }
        None
    }

    /// Sets the redirect route (Apache `redirect=`): requests pinned to this member go to
    /// that member instead whenever this one cannot serve, for a planned migration.
    #[must_use]
    pub fn redirect(mut self, route: MemberId) -> Self {
        self.redirect = Some(route);
        self
    }

    /// Sets the name the member proves over TLS when it differs from the endpoint's host:
    /// sent as SNI and checked against the member's certificate (nginx `proxy_ssl_name`),
    /// and the `Host` requests carry unless the client's is preserved.
    /// For a member addressed by IP whose certificate names its host, as DNS discovery
    /// finds them; without it, an `https` endpoint's own host is the name. A name that is
    /// not a valid DNS name or IP address fails at connect, as a connection failure.
    /// Connections are pooled by endpoint, so members that share an endpoint share their
    /// connections too: give them the same name.
    #[must_use]
    pub fn tls_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.tls_name = Some(name.into());
        self
    }

    /// Sets the weight (Apache `loadfactor`); checked against 1..=[`MAX_WEIGHT`](super::MAX_WEIGHT) on insert.
    #[must_use]
    pub const fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the most requests the member may have in flight at once (Apache `max=`, HAProxy
    /// `maxconn`, nginx `max_conns`); 0, the default, for no limit. Requests beyond it wait
    /// in the balancer's queue for a member with room
    /// ([`BalanceLayer::queue`](crate::balance::BalanceLayer::queue)).
    #[must_use]
    pub const fn max_in_flight(mut self, max: u32) -> Self {
        self.max = max;
        self
    }

    /// The limit on requests in flight it is declared with; 0 for none.
    #[must_use]
    pub const fn max(&self) -> u32 {
        self.max
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

    /// The admin state it is declared with.
    #[must_use]
    pub const fn admin_state(&self) -> AdminState {
        self.state
    }

    /// The member's endpoint.
    #[must_use]
    pub const fn endpoint(&self) -> &Uri {
        &self.endpoint
    }
}

/// Whether `endpoint`'s port, when it writes one, is 1–65535 (`http::Uri` reads a port it
/// cannot parse as no port at all).
fn port_in_range(endpoint: &Uri) -> bool {
    let Some(authority) = endpoint.authority() else {
        return true;
    };
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h);
    if host_port.ends_with(']') {
        return true; // an IPv6 literal without a port
    }
    match host_port.rsplit_once(':') {
        Some((_, port)) => port.parse::<u16>().is_ok_and(|p| p != 0),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_as_members_need_them() {
        let problem = |u: &str| MemberSpec::endpoint_problem(&u.parse().unwrap());
        for good in [
            "http://h",
            "https://h:1",
            "http://h:65535/base",
            "http://[::1]",
            "http://[::1]:8080",
        ] {
            assert_eq!(problem(good), None, "{good}");
        }
        for (bad, says) in [
            ("ftp://h", "http:// or https://"),
            ("/path", "http:// or https://"),
            ("http://h:0", "port"),
            ("http://h:65536", "port"),
            ("http://[::1]:99999", "port"),
            ("http://u:p@h", "user name"),
            ("http://h/?q=1", "query"),
        ] {
            assert!(problem(bad).is_some_and(|p| p.contains(says)), "{bad}");
        }
    }
}
