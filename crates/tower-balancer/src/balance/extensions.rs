//! The facts the balance layer reads from and writes into request and response extensions.
//!
//! Why extensions: the sticky layer, the failover layer, the forwarding service, logs and
//! metrics all need "which member" without a side channel. One typed value in the request
//! (what was picked) and one in the response (who served) is that single fact.

use std::sync::Arc;

use crate::registry::{Member, MemberId};

/// In the request the inner service receives: the member picked for this attempt.
#[derive(Debug, Clone)]
pub struct Picked(pub Arc<Member>);

/// In the response: the member that served it.
#[derive(Debug, Clone)]
pub struct ServedBy(pub Arc<Member>);

/// Put in a request to send it to one member if that member can serve it (the sticky layer
/// does this from a session route).
///
/// The member is used when it is registered, not disabled, healthy and not already tried by
/// this request; a draining member still takes pinned requests. Otherwise the strategy picks,
/// or, with [`strict`](PinnedRoute::strict), the request fails with
/// [`BalanceError::PinnedUnavailable`](super::BalanceError::PinnedUnavailable) (Apache
/// `nofailover=On`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedRoute {
    route: MemberId,
    strict: bool,
}

impl PinnedRoute {
    /// Prefers `route`, falling back to the strategy.
    #[must_use]
    pub const fn new(route: MemberId) -> Self {
        Self {
            route,
            strict: false,
        }
    }

    /// Fails instead of falling back when the member cannot serve.
    #[must_use]
    pub const fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    /// The route.
    #[must_use]
    pub const fn route(&self) -> &MemberId {
        &self.route
    }

    /// Whether falling back is forbidden.
    #[must_use]
    pub const fn is_strict(&self) -> bool {
        self.strict
    }
}

/// Put in a request to give consistent-hash strategies its key directly (it overrides the
/// layer's [`HashKey`](super::HashKey)). Use [`hash_key`](crate::strategy::hash_key) to make one
/// from bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey(pub u64);

/// Put in a request to bound the attempt's time to response headers; the failover layer does
/// this for its per-try timeout. A timed-out attempt fails with a timeout
/// [`UpstreamError`](crate::upstream::UpstreamError) and counts against its member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimeout(pub std::time::Duration);
