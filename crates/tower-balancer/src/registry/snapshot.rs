//! An immutable view of the registry taken once per request.
//!
//! Why immutable snapshots: picking happens on every request on every thread. Reading one
//! `Arc` from an `ArcSwap` costs a few nanoseconds, never blocks, and gives the pick a
//! consistent member list and strategy tables; changes build a new snapshot off the request
//! path and swap it in.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use super::member::Member;

/// A strategy's precomputed table for one tier, type-erased (see [`crate::strategy::Picker`]).
pub(crate) type Table = Box<dyn Any + Send + Sync>;

/// Members that may take new requests at one priority, in the order they are tried.
///
/// Tiers come in this order: active members by priority set (lowest first), then hot-standby
/// members by priority set. A tier holds only members that are eligible for new requests when
/// the snapshot was built (admin state active or standby, and healthy; in panic mode, health
/// is ignored).
pub struct Tier {
    priority: u16,
    standby: bool,
    members: Box<[Arc<Member>]>,
    tables: Box<[Option<Table>]>,
}

impl Tier {
    pub(crate) fn new(
        priority: u16,
        standby: bool,
        members: Box<[Arc<Member>]>,
        tables: Box<[Option<Table>]>,
    ) -> Self {
        Self {
            priority,
            standby,
            members,
            tables,
        }
    }

    /// The priority set (Apache `lbset`).
    #[must_use]
    pub fn priority(&self) -> u16 {
        self.priority
    }

    /// Whether this is a hot-standby tier.
    #[must_use]
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// The members of this tier, sorted by id.
    #[must_use]
    pub fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    pub(crate) fn table(&self, slot: usize) -> Option<&(dyn Any + Send + Sync)> {
        self.tables.get(slot)?.as_deref()
    }
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tier")
            .field("priority", &self.priority)
            .field("standby", &self.standby)
            .field(
                "members",
                &self.members.iter().map(|m| m.id()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Every member of the registry at one version, and the tiers a pick walks.
pub struct Snapshot {
    version: u64,
    members: Box<[Arc<Member>]>,
    tiers: Box<[Tier]>,
    panic: bool,
    limited: bool,
    member_tables: Box<[Table]>,
}

impl Snapshot {
    pub(crate) fn new(
        version: u64,
        members: Box<[Arc<Member>]>,
        tiers: Box<[Tier]>,
        panic: bool,
    ) -> Self {
        let limited = members.iter().any(|m| m.max_in_flight() != 0);
        Self {
            version,
            members,
            tiers,
            panic,
            limited,
            member_tables: Box::new([]),
        }
    }

    pub(crate) fn with_member_tables(mut self, tables: Box<[Table]>) -> Self {
        self.member_tables = tables;
        self
    }

    /// Tables built over every member at publish (see `Registry::attach_member_table`).
    pub(crate) fn member_tables(&self) -> &[Table] {
        &self.member_tables
    }

    /// Whether too few members were healthy (below the panic threshold), so this snapshot's
    /// tiers ignore health and spread requests over every active and standby member.
    #[must_use]
    pub fn is_panic(&self) -> bool {
        self.panic
    }

    /// Whether any member has a limit on requests in flight, so a pick must skip full ones.
    #[must_use]
    pub fn has_limits(&self) -> bool {
        self.limited
    }

    /// Grows by one with every change to the registry.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// All members, whatever their state, sorted by id.
    #[must_use]
    pub fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    /// Number of members, whatever their state.
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the registry had no member at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member with this id (route), if registered. No allocation, `O(log n)`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&Arc<Member>> {
        self.members
            .binary_search_by(|m| m.id().as_str().cmp(id))
            .ok()
            .map(|i| &self.members[i])
    }

    /// The tiers a pick walks, in order.
    #[must_use]
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("members", &self.members.len())
            .field("tiers", &self.tiers)
            .finish()
    }
}
