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

/// Put in a request whose body the client is still sending, a clone kept by whatever reads
/// that body and tells it how the upload goes: the attempt's time limit
/// ([`AttemptTimeout`]) then runs only while the member has the next move. While the body
/// waits on the client, the limit is not applied (a client that stops sending is the
/// request-body idle limit's to end, with 408, and no member is blamed); once the body
/// ended, the limit counts from its end; while the member reads none of it, from the last
/// part it read. So a client that uploads slowly is not taken for a member that hangs, and
/// a member that stops reading still times out. The failover layer does this for every
/// body that is not empty.
#[derive(Debug, Clone, Default)]
pub struct UploadProgress(std::sync::Arc<std::sync::Mutex<Upload>>);

#[derive(Debug, Default, Clone, Copy)]
struct Upload {
    /// The last part read from the client, or the end.
    last: Option<tokio::time::Instant>,
    /// The body is waiting for the client's next part.
    waiting: bool,
    ended: bool,
    /// The client's body failed.
    failed: bool,
}

impl UploadProgress {
    /// An upload not started.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn with(&self, f: impl FnOnce(&mut Upload)) {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The body asked the client for more and has to wait.
    pub fn waiting(&self) {
        self.with(|u| u.waiting = true);
    }

    /// A part of the body came from the client now.
    pub fn read(&self) {
        self.with(|u| {
            u.waiting = false;
            u.last = Some(tokio::time::Instant::now());
        });
    }

    /// The body ended now.
    pub fn ended(&self) {
        self.with(|u| {
            u.waiting = false;
            u.ended = true;
            u.last = Some(tokio::time::Instant::now());
        });
    }

    /// The client's body failed now: the attempt's failure is the client's, whatever the
    /// member's connection says of it (an HTTP/2 member's sees only the stream reset it got).
    pub fn failed(&self) {
        self.with(|u| u.failed = true);
    }

    /// Whether the client's body failed.
    #[must_use]
    pub fn client_failed(&self) -> bool {
        let mut failed = false;
        self.with(|u| failed = u.failed);
        failed
    }

    /// When a limit of `timeout` for an attempt that started at `started` runs out instead
    /// of `started + timeout`, which has passed: `None` when that was right.
    pub(crate) fn later_deadline(
        &self,
        started: tokio::time::Instant,
        timeout: std::time::Duration,
    ) -> Option<tokio::time::Instant> {
        let u = *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        let from = if u.waiting && !u.ended {
            // the client's move: looked at again a limit from now
            now
        } else {
            // the member's move since the last part it read (or the end)
            u.last.filter(|&l| l > started)?
        };
        let deadline = crate::deadline::deadline(from, timeout);
        (deadline > now).then_some(deadline)
    }
}

/// Put in a request by a layer outside the balancer that must say which members the request
/// went to even when it is dropped before an answer (its client went away): the access log's
/// 499 lines. That layer keeps a clone; each attempt the balancer sends counts itself here
/// with its member, and so does a member client's resend of it ([`SentTo::note_again`]). A
/// request without one costs nothing more.
#[derive(Debug, Clone, Default)]
pub struct SentTo(Arc<std::sync::Mutex<(usize, Option<MemberId>)>>);

impl SentTo {
    /// Nothing sent yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An attempt went to `member`.
    pub(crate) fn note(&self, member: &MemberId) {
        let mut sent = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sent.0 += 1;
        sent.1 = Some(member.clone());
    }

    /// The last attempt was sent again to its member: the member client's resend, on a new
    /// connection, after the member closed a reused one as the request arrived.
    pub fn note_again(&self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0 += 1;
    }

    /// The sends so far, resends included (0 when the request reached no member).
    #[must_use]
    pub fn count(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }

    /// The attempts sent so far, and the member the last one went to.
    #[must_use]
    pub fn get(&self) -> (usize, Option<MemberId>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
