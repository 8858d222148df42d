//! The member registry: which members exist, what they may do, and how they are doing.
//!
//! Why a registry apart from the layers: membership changes come from many places (operators,
//! health probes, passive ejection, discovery, the balancer-manager page) while every request
//! reads it. The [`Registry`] takes changes one at a time under a lock and publishes immutable
//! [`Snapshot`]s that requests read without locking. Per-member live stats are atomics inside
//! each [`Member`], so they survive every rebuild.
//!
//! Member states follow Apache's mod_proxy_balancer: [`AdminState::Active`],
//! [`AdminState::Standby`] (hot standby), [`AdminState::Draining`] (no new sessions, sticky
//! ones still served) and [`AdminState::Disabled`]; [`Health`] is kept apart, so a probe never
//! overrides an operator. Priority sets (Apache `lbset`) order the [`Tier`]s a pick walks.

mod batch;
mod discover;
mod error;
mod handle;
mod id;
mod load;
mod member;
mod metrics;
mod panic;
mod queue;
mod snapshot;
mod spec;
mod state;
mod stats;
mod tables;
mod verdict;

pub use batch::Batch;
pub use discover::{Discovery, DiscoveryReport};
pub use error::RegistryError;
pub use handle::{Changes, Registry, RegistryClosed, SnapshotGuard, DEFAULT_PANIC_THRESHOLD};
pub use id::{MemberId, MAX_ID_LEN};
pub use load::RegistryLoad;
pub(crate) use member::ProbeMemo;
pub use member::{AdminState, Health, HealthSource, Member, MAX_WEIGHT};
pub use metrics::{LatencyHistogram, MemberMetrics, LATENCY_BUCKETS};
pub use queue::WaitQueue;
pub(crate) use queue::Waiter;
pub use snapshot::{Snapshot, Tier};
pub use spec::MemberSpec;
pub(crate) use stats::decay_factor as stats_decay_factor;
pub use stats::{InFlight, MemberStats, StatsView, EWMA_DECAY};
pub(crate) use tables::WeakBuilder;
pub use verdict::{FailureKind, Outcome};
