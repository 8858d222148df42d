//! The `Registry` handle: the one place members are added, changed and removed.
//!
//! Why one writer lock and lock-free readers: changes are rare (an operator, a probe, a DNS
//! answer) and may take a few milliseconds to rebuild strategy tables; picks are constant and
//! must never wait. Writers serialise on a mutex, build a new [`Snapshot`] and swap it in;
//! readers load the current snapshot with one atomic operation.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

use super::batch::Batch;
use super::error::RegistryError;
use super::member::{AdminState, Health, HealthSource, Member, MemberId};
use super::spec::MemberSpec;

/// The default panic threshold: Envoy's 50%.
pub const DEFAULT_PANIC_THRESHOLD: f64 = 0.5;
use super::load::RegistryLoad;
use super::snapshot::{Snapshot, Table, Tier};
use super::tables::TableBuilder;

/// The set of members a balancer sends to. Cheap to clone: clones share one registry.
///
/// ```
/// use tower_balancer::registry::{AdminState, MemberId, MemberSpec, Registry};
///
/// let registry = Registry::new();
/// let node1 = MemberId::new("node1")?;
/// registry.insert(MemberSpec::new(node1.clone(), "https://abc.com:9443".parse()?))?;
/// registry.insert(MemberSpec::new(MemberId::new("node2")?, "https://xyz.com:9444".parse()?).weight(2))?;
/// registry.set_state("node1", AdminState::Draining)?;
///
/// let snapshot = registry.load();
/// assert_eq!(snapshot.len(), 2);
/// assert_eq!(snapshot.get("node1").unwrap().state(), AdminState::Draining);
/// // only node2 takes new requests now
/// assert_eq!(snapshot.tiers()[0].members().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Registry {
    shared: Arc<RegistryState>,
}

struct RegistryState {
    current: ArcSwap<Snapshot>,
    writer: Mutex<Writer>,
    changes: watch::Sender<u64>,
    load: Arc<RegistryLoad>,
}

pub(super) struct Writer {
    pub(super) members: BTreeMap<MemberId, Arc<Member>>,
    pub(super) builders: Vec<Option<Arc<dyn TableBuilder>>>,
    /// Builders of tables over every member (the sticky layer's route tokens).
    pub(super) member_builders: Vec<Arc<dyn TableBuilder>>,
    pub(super) version: u64,
    pub(super) next_serial: u64,
    pub(super) panic_threshold: f64,
    /// Whether operators were last told the registry is in panic mode
    /// ([`panic::judged`](super::panic::judged)): a change is logged and counted once.
    pub(super) in_panic: bool,
}

/// A snapshot held for the duration of one pick: a cheap, lock-free borrow.
pub struct SnapshotGuard(Guard<Arc<Snapshot>>);

impl Deref for SnapshotGuard {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

impl fmt::Debug for SnapshotGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Tells a status page or probe that the registry changed. Made by [`Registry::subscribe`].
#[derive(Debug, Clone)]
pub struct Changes(watch::Receiver<u64>);

/// The registry was dropped; no more changes will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the registry was dropped")]
pub struct RegistryClosed;

impl Changes {
    /// The version last seen.
    #[must_use]
    pub fn version(&self) -> u64 {
        *self.0.borrow()
    }

    /// Marks the current version as seen, so [`changed`](Self::changed) waits for a newer one.
    pub fn mark_seen(&mut self) -> u64 {
        *self.0.borrow_and_update()
    }

    /// Waits for a version newer than the last one seen and returns it.
    ///
    /// # Errors
    /// [`RegistryClosed`] once every handle of the registry is dropped.
    pub async fn changed(&mut self) -> Result<u64, RegistryClosed> {
        self.0.changed().await.map_err(|_| RegistryClosed)?;
        Ok(*self.0.borrow_and_update())
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("snapshot", &*self.load())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            shared: Arc::new(RegistryState {
                current: ArcSwap::from_pointee(Snapshot::new(0, Box::new([]), Box::new([]), false)),
                writer: Mutex::new(Writer {
                    members: BTreeMap::new(),
                    builders: Vec::new(),
                    member_builders: Vec::new(),
                    version: 0,
                    next_serial: 1,
                    panic_threshold: DEFAULT_PANIC_THRESHOLD,
                    in_panic: false,
                }),
                changes,
                load: Arc::new(RegistryLoad::default()),
            }),
        }
    }

    /// The current snapshot, borrowed without locking; hold it only for one pick.
    #[must_use]
    pub fn load(&self) -> SnapshotGuard {
        SnapshotGuard(self.shared.current.load())
    }

    /// The current snapshot as an owned `Arc`, to keep across awaits.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// Members inserted from now on start down by the health probe
    /// ([`HealthSource::Probe`](super::HealthSource::Probe)) until it has answered them, or
    /// healthy again (`false`). A [`HealthProbe`](crate::health::HealthProbe) whose members
    /// start down sets it when spawned; whoever stops probing for good clears it.
    pub fn start_new_members_down(&self, down: bool) {
        self.shared.load.set_new_members_down(down);
    }

    /// Forgets what health probes said of every member: none stays down by a probe, none
    /// counts as probed, and members inserted from now on start healthy. For when probing
    /// stops (a reload that removes the checks), so a checker started later begins afresh.
    pub fn forget_probe_results(&self) {
        self.start_new_members_down(false);
        // one snapshot for all: the members come back together (panic mode ends once, with
        // every member counted)
        let snapshot = self.snapshot();
        let _ = self.update(|b| {
            for m in snapshot.members() {
                m.set_probe_memo(super::ProbeMemo::default());
                let id = m.id().as_str();
                // one removed since the snapshot: nothing to bring back
                let _ = b.set_health_by(id, super::HealthSource::Probe, super::Health::Healthy);
            }
            Ok::<(), RegistryError>(())
        });
    }

    /// Requests in flight on all members.
    #[must_use]
    pub fn load_stats(&self) -> &RegistryLoad {
        &self.shared.load
    }

    /// Subscribes to changes.
    #[must_use]
    pub fn subscribe(&self) -> Changes {
        Changes(self.shared.changes.subscribe())
    }

    /// Adds a member.
    ///
    /// # Errors
    /// [`RegistryError::DuplicateId`] if the id is taken, [`RegistryError::InvalidWeight`] for
    /// a weight outside 1..=65535.
    pub fn insert(&self, spec: MemberSpec) -> Result<Arc<Member>, RegistryError> {
        self.update(|b| b.insert(spec))
    }

    /// Adds a member, or brings an existing one in line with `spec`: with the same endpoint
    /// (and TLS name) its settings change and its stats stay; with another endpoint or TLS
    /// name it is replaced by a new member. Discovery uses this.
    ///
    /// # Errors
    /// [`RegistryError::InvalidWeight`] for a weight outside 1..=65535.
    pub fn upsert(&self, spec: MemberSpec) -> Result<Arc<Member>, RegistryError> {
        self.update(|b| b.upsert(spec))
    }

    /// Removes a member. Requests already in flight on it finish normally; no pick that starts
    /// after this returns can choose it.
    ///
    /// # Errors
    /// [`RegistryError::UnknownMember`] if no member has this id.
    pub fn remove(&self, id: &str) -> Result<Arc<Member>, RegistryError> {
        self.update(|b| b.remove(id))
    }

    /// Changes a member's weight.
    ///
    /// # Errors
    /// [`RegistryError::UnknownMember`], or [`RegistryError::InvalidWeight`] outside 1..=65535.
    pub fn set_weight(&self, id: &str, weight: u32) -> Result<(), RegistryError> {
        self.update(|b| b.set_weight(id, weight))
    }

    /// Changes a member's priority set.
    ///
    /// # Errors
    /// [`RegistryError::UnknownMember`].
    pub fn set_priority(&self, id: &str, priority: u16) -> Result<(), RegistryError> {
        self.update(|b| b.set_priority(id, priority))
    }

    /// Changes a member's admin state.
    ///
    /// # Errors
    /// [`RegistryError::UnknownMember`].
    pub fn set_state(&self, id: &str, state: AdminState) -> Result<(), RegistryError> {
        self.update(|b| b.set_state(id, state))
    }

    /// Sets the operator's verdict on a member's health (probes and outlier ejection keep
    /// their own: the member is healthy when none says it is down).
    ///
    /// # Errors
    /// [`RegistryError::UnknownMember`].
    pub fn set_health(&self, id: &str, health: Health) -> Result<(), RegistryError> {
        self.update(|b| b.set_health(id, health))
    }

    /// Records one source's verdict on a member's health; the health module uses this.
    ///
    /// # Errors
    /// [`RegistryError::UnknownMember`].
    pub fn set_health_by(
        &self,
        id: &str,
        source: HealthSource,
        health: Health,
    ) -> Result<(), RegistryError> {
        self.update(|b| b.set_health_by(id, source, health))
    }

    /// Sets the panic threshold (default 0.5, as Envoy): when fewer than this fraction of the
    /// members that are active or standby are healthy, health is ignored and requests spread
    /// over all of them (fail open), rather than crushing the few healthy ones. 0 turns it off.
    /// Apache has no panic mode; its closest relative is `forcerecovery`, which retries every
    /// member in error state when all of them are.
    pub fn set_panic_threshold(&self, threshold: f64) {
        let _ = self.update(|b| {
            b.set_panic_threshold(threshold);
            Ok::<_, RegistryError>(())
        });
    }

    /// Sets or clears a member's redirect route (Apache `redirect=`).
    ///
    /// # Errors
    /// [`RegistryError::UnknownMember`].
    pub fn set_redirect(&self, id: &str, route: Option<MemberId>) -> Result<(), RegistryError> {
        self.update(|b| b.set_redirect(id, route))
    }

    /// Applies several changes with a single snapshot rebuild. Each change takes effect in
    /// order; if the closure returns an error, the changes made before it stay and are
    /// published.
    ///
    /// # Errors
    /// Whatever the closure returns.
    pub fn update<T, E>(&self, f: impl FnOnce(&mut Batch<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut writer = self.lock();
        let mut batch = Batch {
            writer: &mut writer,
            load: &self.shared.load,
            changed: false,
        };
        let result = f(&mut batch);
        if batch.changed {
            self.publish(&mut writer);
        }
        result
    }

    /// Registers a strategy table builder and returns its slot. The snapshot is rebuilt
    /// before this returns, so every snapshot loaded afterwards has the table.
    pub(crate) fn attach(&self, builder: Arc<dyn TableBuilder>) -> usize {
        let mut writer = self.lock();
        let slot = match writer.builders.iter().position(Option::is_none) {
            Some(free) => {
                writer.builders[free] = Some(builder);
                free
            }
            None => {
                writer.builders.push(Some(builder));
                writer.builders.len() - 1
            }
        };
        self.publish(&mut writer);
        slot
    }

    /// Registers a builder of a table over every member, whatever its state (a table per
    /// tier sees only the members that take new requests). Built on every publish, off the
    /// request path; dropped once the builder returns `None`. The snapshot is rebuilt before
    /// this returns.
    pub(crate) fn attach_member_table(&self, builder: Arc<dyn TableBuilder>) {
        let mut writer = self.lock();
        writer.member_builders.push(builder);
        self.publish(&mut writer);
    }

    /// Sets slow-start ramps (member id, permille of weight) and rebuilds once; the health
    /// module's slow start uses this.
    pub fn set_ramps(&self, ramps: &[(MemberId, u16)]) {
        let mut writer = self.lock();
        let mut changed = false;
        for (id, permille) in ramps {
            if let Some(m) = writer.members.get(id.as_str()) {
                if m.ramp_permille() != *permille {
                    m.set_ramp_permille(*permille);
                    changed = true;
                }
            }
        }
        if changed {
            self.publish(&mut writer);
        }
    }

    /// Rebuilds the snapshot now (for example after a strategy was dropped, to free its tables).
    pub fn rebuild(&self) {
        let mut writer = self.lock();
        self.publish(&mut writer);
    }

    /// A health checker had its first probe's result for a member (which counts as healthy
    /// for panic mode's WARN until then, [`panic::judged`](super::panic::judged)): says
    /// panic mode if that failure is what puts the registry in it.
    pub(crate) fn first_probe_done(&self) {
        let mut writer = self.lock();
        self.note_panic_change(&mut writer);
    }

    /// Logs and counts a change of panic mode as operators are told of it.
    fn note_panic_change(&self, writer: &mut Writer) {
        let (panic, healthy, candidates) = super::panic::judged(writer);
        if panic != writer.in_panic {
            writer.in_panic = panic;
            self.shared.load.note_panic(panic, healthy, candidates);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A panic in a user closure leaves the map consistent (every change is one insert or
        // one atomic store), so a poisoned lock is safe to keep using.
        self.shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, writer: &mut Writer) {
        writer.version += 1;
        let snapshot = Arc::new(writer.build());
        self.shared.current.store(snapshot.clone());
        self.note_panic_change(writer);
        self.shared.changes.send_replace(writer.version);
        let queue = self.shared.load.queue();
        if queue.depth() > 0 {
            // a member joined, came back or got more room: waiting requests may take it
            queue.offer(snapshot.members());
        }
    }
}

impl Writer {
    fn build(&mut self) -> Snapshot {
        let members: Box<[Arc<Member>]> = self.members.values().cloned().collect();
        let takes_new = |m: &Member| matches!(m.state(), AdminState::Active | AdminState::Standby);
        let candidates = members.iter().filter(|m| takes_new(m)).count();
        let healthy = members
            .iter()
            .filter(|m| takes_new(m) && m.health() == Health::Healthy)
            .count();
        #[allow(clippy::cast_precision_loss)]
        let panic = candidates > 0 && (healthy as f64) < self.panic_threshold * candidates as f64;
        // (standby, priority) orders active sets first, lowest priority first.
        let mut grouped: BTreeMap<(bool, u16), Vec<Arc<Member>>> = BTreeMap::new();
        for m in &*members {
            if !panic && m.health() != Health::Healthy {
                continue;
            }
            let standby = match m.state() {
                AdminState::Active => false,
                AdminState::Standby => true,
                AdminState::Draining | AdminState::Disabled => continue,
            };
            grouped
                .entry((standby, m.priority()))
                .or_default()
                .push(m.clone());
        }
        let builders = &mut self.builders;
        let tiers: Box<[Tier]> = grouped
            .into_iter()
            .map(|((standby, priority), tier_members)| {
                let tables: Box<[Option<Table>]> = builders
                    .iter_mut()
                    .map(|slot| {
                        let table = slot.as_ref()?.build(&tier_members);
                        if table.is_none() {
                            *slot = None; // the strategy is gone: free its slot
                        }
                        table
                    })
                    .collect();
                Tier::new(priority, standby, tier_members.into_boxed_slice(), tables)
            })
            .collect();
        let mut member_tables = Vec::with_capacity(self.member_builders.len());
        self.member_builders
            .retain(|b| b.build(&members).map(|t| member_tables.push(t)).is_some());
        Snapshot::new(self.version, members, tiers, panic)
            .with_member_tables(member_tables.into_boxed_slice())
    }
}

#[cfg(test)]
#[path = "handle_tests.rs"]
mod tests;
