//! Attaching a strategy to a registry and walking the tiers.

use std::fmt;
use std::sync::Arc;

use super::pick::{first_available, PickContext, Strategy};
use crate::registry::{Member, Registry, Snapshot, WeakBuilder};

/// Why no member could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickError {
    /// No member is eligible: the registry is empty, every member is disabled, draining or
    /// unhealthy, or every eligible member was already tried by this request.
    #[error("no eligible member")]
    NoEligibleMember,
    /// Members could take the request but all are at their limit of requests in flight
    /// ([`Member::max_in_flight`](crate::registry::Member::max_in_flight)).
    #[error("every eligible member is at its limit of requests in flight")]
    Busy,
    /// The snapshot came from a registry this picker is not attached to.
    #[error("strategy is not attached to this registry")]
    NotAttached,
}

/// Whether some member of a tier is left untried, so only its limit kept it out.
#[cold]
#[inline(never)]
fn only_full_left(members: &[Arc<Member>], cx: &PickContext<'_>) -> bool {
    members.iter().any(|m| !cx.tried().contains(m))
}

/// A strategy attached to a registry: every snapshot the registry publishes carries this
/// strategy's tables. Cheap to clone; when every clone is dropped the registry frees the
/// tables at its next rebuild.
///
/// ```
/// use tower_balancer::registry::{MemberId, MemberSpec, Registry};
/// use tower_balancer::strategy::{PickContext, Picker, RoundRobin, Tried};
///
/// let registry = Registry::new();
/// for (id, port) in [("node1", 9763), ("node2", 9764)] {
///     let uri = format!("http://127.0.0.1:{port}").parse()?;
///     registry.insert(MemberSpec::new(MemberId::new(id)?, uri))?;
/// }
/// let picker = Picker::new(&registry, RoundRobin::new());
/// let snapshot = registry.load();
/// let tried = Tried::new();
/// let first = picker.pick(&snapshot, &PickContext::new(None, &tried))?;
/// let second = picker.pick(&snapshot, &PickContext::new(None, &tried))?;
/// assert_ne!(first.id(), second.id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Picker<S> {
    strategy: Arc<S>,
    slot: usize,
}

impl<S> Clone for Picker<S> {
    fn clone(&self) -> Self {
        Self {
            strategy: self.strategy.clone(),
            slot: self.slot,
        }
    }
}

impl<S: Strategy> fmt::Debug for Picker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("strategy", &self.strategy.name())
            .field("slot", &self.slot)
            .finish()
    }
}

impl<S: Strategy> Picker<S> {
    /// Attaches `strategy` to `registry`; the registry rebuilds its snapshot with this
    /// strategy's tables before this returns.
    pub fn new(registry: &Registry, strategy: S) -> Self {
        let strategy = Arc::new(strategy);
        let builder = WeakBuilder {
            strategy: Arc::downgrade(&strategy),
            build: |s: &S, members: &[Arc<Member>]| s.build(members),
        };
        let slot = registry.attach(Arc::new(builder));
        Self { strategy, slot }
    }

    /// The strategy.
    #[must_use]
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// Picks a member for a new request: the first tier (active sets by priority, then hot
    /// standby) in which the strategy finds a member `cx` does not exclude.
    /// No locks, no allocation.
    ///
    /// # Errors
    /// [`PickError::NoEligibleMember`] when no tier has such a member.
    pub fn pick<'s>(
        &self,
        snapshot: &'s Snapshot,
        cx: &PickContext<'_>,
    ) -> Result<&'s Arc<Member>, PickError> {
        for tier in snapshot.tiers() {
            let Some(table) = tier.table(self.slot) else {
                return Err(PickError::NotAttached);
            };
            let Some(table) = table.downcast_ref::<S::Table>() else {
                return Err(PickError::NotAttached);
            };
            let members = tier.members();
            let picked = self.strategy.pick(table, members, cx);
            // A user strategy that breaks its contract must not make us panic or send to an
            // excluded member: fall back to the first available member of the tier.
            let picked = match picked {
                Some(i)
                    if i < members.len()
                        && (cx.excludes_nothing() || !cx.is_excluded(&members[i])) =>
                {
                    Some(i)
                }
                Some(_) => first_available(members, 0, cx),
                None => None,
            };
            if let Some(i) = picked {
                return Ok(&members[i]);
            }
            // Members with no room do not send requests on to the next set: the request
            // waits for one of them, as HAProxy's backup servers wait for a server that is down.
            if cx.has_limits() && only_full_left(members, cx) {
                return Err(PickError::Busy);
            }
        }
        Err(PickError::NoEligibleMember)
    }
}
