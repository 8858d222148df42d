//! What happened to a request on a member, and who gets told.
//!
//! Why a separate notion from errors: passive health, stats and logs must agree on what counts
//! against a member. A client that disconnects, sends a 4xx-worthy request or a body that never
//! arrives is not the member's fault (Apache CVE-2011-3348 and CVE-2012-4557 put members in
//! error state from crafted client requests), so the balance layer classifies every attempt
//! once, here, and every consumer reads that one verdict.

use std::sync::Arc;

use crate::registry::Member;
pub use crate::registry::{FailureKind, Outcome};

/// Receives the verdict on every attempt the balance layer makes. Passive health checking
/// implements this; so can metrics.
///
/// Called on the request path: implementations must not block.
pub trait OutcomeObserver: Send + Sync + 'static {
    /// Called once per attempt, after the member's own stats were updated.
    fn observe(&self, member: &Arc<Member>, outcome: &Outcome);
}

impl<F> OutcomeObserver for F
where
    F: Fn(&Arc<Member>, &Outcome) + Send + Sync + 'static,
{
    fn observe(&self, member: &Arc<Member>, outcome: &Outcome) {
        self(member, outcome);
    }
}
