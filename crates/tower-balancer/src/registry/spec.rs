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
        }
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
