//! By traffic (Apache `lbmethod=bytraffic`).
//!
//! Why: when responses differ wildly in size, counting requests is not counting work; Apache's
//! bytraffic sends the next request to the member that has moved the fewest bytes relative to
//! its weight, so bulk downloads spread evenly.

use std::sync::Arc;

use super::least_outstanding::{least_by, ScanTable};
use super::pick::{PickContext, Strategy};
use crate::registry::Member;

/// Picks the member with the fewest request plus response body bytes per unit of weight,
/// counted since it joined the registry; ties go round robin.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByTraffic;

impl ByTraffic {
    /// The strategy.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

impl Strategy for ByTraffic {
    type Table = ScanTable;

    fn name(&self) -> &'static str {
        "by-traffic"
    }

    fn build(&self, _members: &[Arc<Member>]) -> ScanTable {
        ScanTable::default()
    }

    fn pick(
        &self,
        table: &ScanTable,
        members: &[Arc<Member>],
        cx: &PickContext<'_>,
    ) -> Option<usize> {
        least_by(table, members, cx, |m| m.stats().traffic())
    }
}
