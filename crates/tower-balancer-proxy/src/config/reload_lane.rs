//! One balancer of a running configuration, and what a reload does to it: its registry is
//! kept (members keep their health, counters and pooled connections), its members are
//! brought to the new file's, its probes, discovery and ejection settings replaced where
//! they changed. A balancer the new file adds starts fresh; one it drops stops.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tower::discover::Change;
use tower_balancer::discovery::DnsDiscovery;
use tower_balancer::failover::FailoverConfig;
use tower_balancer::health::{OutlierDetection, ReadmissionTask, SlowStart};
use tower_balancer::registry::{MemberId, MemberSpec, Registry, DEFAULT_PANIC_THRESHOLD};

use super::bound::Tasks;
use super::build::ConfigFile;
use super::file::BalancerSection;
use super::owned::{SourceTask, Statics};
use super::plan::{AbortOnDrop, LanePlan, ProbeKind, SourcePlan};
use super::reloader::{ReloadError, Reloaded};
use super::strategy::ConfiguredStrategy;
use super::workers::LaneBuild;
use crate::manager::ManagerInfo;
use crate::proxy::StackPlan;

/// One balancer while the configuration serves.
pub(crate) struct RunningLane {
    pub(super) name: String,
    pub(super) registry: Registry,
    pub(super) info: ManagerInfo,
    /// Its section of the file in force (a reload compares the next one with it).
    section: BalancerSection,
    /// The members its file itself declares (not its members file's).
    declared: Vec<MemberSpec>,
    /// Their ids, shared with the discovery sources, which leave them alone.
    statics: Statics,
    outliers: OutlierDetection,
    _readmissions: ReadmissionTask,
    pub(super) failover: FailoverConfig,
    tasks: Tasks,
    /// Members dropped by earlier reloads, draining.
    drains: Vec<AbortOnDrop>,
}

/// What a reload made for one balancer before anything is swapped.
pub(super) struct Prepared {
    plan: StackPlan<ConfiguredStrategy>,
    registry: Registry,
    outliers: OutlierDetection,
    /// Whether `outliers` is new (its settings changed, or the balancer is).
    fresh_outliers: bool,
    probe: Option<ProbeKind>,
    section: BalancerSection,
}

impl Prepared {
    /// Balancer `lane` of the new file (`view` is the file as that balancer sees it), on the
    /// registry of `old` when a balancer of its name runs.
    pub(super) fn new(
        old: Option<&RunningLane>,
        lane: &LanePlan,
        view: &ConfigFile,
        plan: StackPlan<ConfiguredStrategy>,
    ) -> Result<Self, ReloadError> {
        let registry = old.map_or_else(|| lane.registry.clone(), |o| o.registry.clone());
        // probes reach members through the live registry's names
        let probe = view.probe(&plan.forward, &registry)?;
        let (outliers, fresh_outliers) = match old {
            Some(o) if lane.stack.outliers == *o.outliers.config() => (o.outliers.clone(), false),
            _ => (
                OutlierDetection::named(&lane.name, registry.clone(), lane.stack.outliers),
                true,
            ),
        };
        Ok(Self {
            plan,
            registry,
            outliers,
            fresh_outliers,
            probe,
            section: view.file.balancer.clone(),
        })
    }

    /// What its layers are built from.
    pub(super) fn build(&self) -> LaneBuild {
        (
            self.plan.clone(),
            self.registry.clone(),
            self.outliers.clone(),
        )
    }
}

impl RunningLane {
    /// A balancer serving from the start, with the tasks bind started for it.
    pub(crate) fn new(
        lane: LanePlan,
        outliers: OutlierDetection,
        tasks: Tasks,
        section: BalancerSection,
    ) -> Self {
        Self {
            _readmissions: outliers.spawn(),
            name: lane.name,
            registry: lane.registry,
            info: lane.info,
            section,
            declared: lane.declared,
            statics: lane.statics,
            outliers,
            failover: lane.stack.failover,
            tasks,
            drains: Vec::new(),
        }
    }

    /// A balancer a reload added: its probes, discovery and slow start begin now (etcd's
    /// members arrive as its watch reads them).
    pub(super) fn start(mut lane: LanePlan, ready: Prepared) -> Self {
        // its tasks log in its name
        let _span = tracing::info_span!("balancer", name = %lane.name).entered();
        let registry = ready.registry.clone();
        let drain = lane.sources.drain;
        let tasks = Tasks {
            probe: ready.probe.as_ref().map(|p| p.spawn(&registry).0),
            // the new balancer's registry holds the file's first read
            file_source: (lane.sources.file.take())
                .map(|f| SourceTask::members_file(f, &lane.statics, &registry, drain)),
            dns_source: (lane.sources.dns.take())
                .map(|d| SourceTask::dns(d, &lane.statics, &registry, drain)),
            etcd_source: lane
                .sources
                .etcd
                .take()
                .map(|source| super::etcd::spawn(source, None, &registry, drain)),
            slow_start: lane
                .sources
                .slow_start
                .map(|window| SlowStart::new(window).spawn(registry.clone())),
        };
        let failover = ready.plan.failover.clone();
        let mut running = Self::new(lane, ready.outliers, tasks, ready.section);
        running.failover = failover;
        running
    }

    /// Takes the new file's settings for this balancer: ejection, members, sources, the
    /// failover counters and the manager's description.
    pub(super) fn take(&mut self, lane: LanePlan, ready: Prepared, report: &mut Reloaded) {
        // what the changes log (panic mode, members, restarted tasks) is in its name
        let _span = tracing::info_span!("balancer", name = %self.name).entered();
        if ready.fresh_outliers {
            self.replace_outliers(ready.outliers);
        }
        self.members(&lane, &ready.section, report);
        self.failover = ready.plan.failover.clone();
        self.info = lane.info.clone();
        self.sources(lane.sources, ready.probe, &ready.section);
        self.section = ready.section;
    }

    /// Passive ejection with new settings: the members the old one ejected stay out for
    /// the rest of their time, with their count, and the new one readmits them.
    fn replace_outliers(&mut self, next: OutlierDetection) {
        next.adopt_ejections(&self.outliers);
        self._readmissions = next.spawn();
        self.outliers = next;
    }

    /// Brings the registry to the file's members: new ones in, changed ones updated in
    /// place, dropped ones drained for the drain period, untouched ones left as they are
    /// (with whatever the manager or a probe set on them).
    fn members(&mut self, lane: &LanePlan, section: &BalancerSection, report: &mut Reloaded) {
        // a key taken out of the file goes back to its default, as at a start
        let threshold = section.panic_threshold.unwrap_or(DEFAULT_PANIC_THRESHOLD);
        self.registry.set_panic_threshold(threshold);
        let old: BTreeMap<MemberId, MemberSpec> = self
            .declared
            .drain(..)
            .map(|s| (s.id().clone(), s))
            .collect();
        // the sources leave the new file's members alone before anything changes
        self.statics
            .set(lane.declared.iter().map(|s| s.id().clone()));
        for spec in &lane.declared {
            // compared with the registry too: a source may have taken the member out
            let live = self.registry.load().get(spec.id().as_str()).cloned();
            match (old.get(spec.id()), live) {
                (Some(o), Some(_)) if o == spec => continue,
                (Some(o), Some(m)) => {
                    if m.state() != o.admin_state() {
                        tracing::warn!(
                            member = %spec.id(),
                            status = %spec.admin_state(),
                            "the file changed this member: its status in the file replaces the one set while running"
                        );
                    }
                    report.changed.push(spec.id().clone());
                }
                _ => report.added.push(spec.id().clone()),
            }
            if let Err(e) = self.registry.upsert(spec.clone()) {
                tracing::warn!(member = %spec.id(), error = %e, "member refused on reload");
            }
        }
        let removed: Vec<MemberId> = old
            .into_keys()
            .filter(|id| !lane.declared.iter().any(|s| s.id() == id))
            .collect();
        self.leave(removed, lane.sources.drain, report);
        self.declared.clone_from(&lane.declared);
    }

    /// The members the file no longer declares: a running source that names one takes it
    /// over as it names it; the others drain for `drain` and go.
    fn leave(&mut self, removed: Vec<MemberId>, drain: Duration, report: &mut Reloaded) {
        self.drains.retain(|d| !d.is_finished());
        let mut changes: Vec<Result<Change<MemberId, MemberSpec>, std::convert::Infallible>> =
            Vec::new();
        for id in removed {
            let named = [&self.tasks.file_source, &self.tasks.dns_source]
                .into_iter()
                .flatten()
                .find_map(|source| source.spec(&id));
            match named {
                Some(spec) => {
                    if let Err(e) = self.registry.upsert(spec) {
                        tracing::warn!(member = %id, error = %e, "member refused on reload");
                    }
                    report.changed.push(id);
                }
                None => {
                    report.draining.push(id.clone());
                    changes.push(Ok(Change::Remove(id)));
                }
            }
        }
        if !changes.is_empty() {
            let drain = self
                .registry
                .discover(futures_util::stream::iter(changes))
                .drain_removed(drain);
            self.drains.push(AbortOnDrop::spawn(drain));
        }
    }

    /// Probes with the new settings (resumed: members keep the health they have).
    fn probes(&mut self, probe: Option<ProbeKind>) {
        self.tasks.probe = probe.map(|p| p.spawn_resumed(&self.registry));
        if self.tasks.probe.is_none() {
            // nothing probes any more: what the last probe said down must not stay down,
            // members added later must not wait for a probe that never comes, and checks
            // turned on again start afresh (a member failing then must not pass for up)
            self.registry.forget_probe_results();
        }
    }

    /// Probes with the new settings (resumed: members keep the health they have), and the
    /// discovery sources and slow start again where their settings changed.
    fn sources(
        &mut self,
        mut sources: SourcePlan,
        probe: Option<ProbeKind>,
        new: &BalancerSection,
    ) {
        // (in the balancer's span, entered by `take`: restarted tasks log in its name)
        self.probes(probe);
        let old = &self.section;
        let drain = sources.drain;
        let drain_changed = old.drain != new.drain;
        // what stopped sources put in and no one names any more drains and goes
        let mut gone = BTreeSet::new();
        let mut restarted = false;
        if drain_changed
            || old.members_file != new.members_file
            || old.members_poll != new.members_poll
        {
            // this registry never had the new file's first read: it announces it all
            let next = sources
                .file
                .take()
                .map(|f| f.starting_from([]).into_stream());
            let slot = &mut self.tasks.file_source;
            restart(slot, next, &self.statics, &self.registry, drain, &mut gone);
            restarted = true;
        }
        if drain_changed || old.dns != new.dns {
            let next = sources.dns.take().map(DnsDiscovery::into_stream);
            let slot = &mut self.tasks.dns_source;
            restart(slot, next, &self.statics, &self.registry, drain, &mut gone);
            restarted = true;
        }
        // every reload starts etcd again, so a password file or certificate rewritten in
        // place (a rotation) is read again; the new source takes over the old one's members
        if drain_changed || old.etcd.is_some() || new.etcd.is_some() {
            let previous = self.tasks.etcd_source.take();
            self.tasks.etcd_source = match (sources.etcd.take(), previous) {
                // the new source removes what the old one added and no longer names
                (Some(next), previous) => Some(super::etcd::spawn(
                    next,
                    previous.as_ref(),
                    &self.registry,
                    drain,
                )),
                // the section is gone: the members etcd named drain and go
                (None, Some(previous)) => {
                    self.drains.push(previous.retire(&self.registry, drain));
                    None
                }
                (None, None) => None,
            };
        }
        if restarted {
            let kept = self.kept();
            self.drains
                .extend(super::owned::retire(&self.registry, gone, &kept, drain));
        }
        if old.slow_start != new.slow_start {
            self.tasks.slow_start = new
                .slow_start
                .map(|w| SlowStart::new(w).spawn(self.registry.clone()));
        }
    }

    /// The members someone still names: the file's (and its members file's) and the
    /// running discovery sources'.
    fn kept(&self) -> BTreeSet<MemberId> {
        let mut kept: BTreeSet<MemberId> = self.declared.iter().map(|s| s.id().clone()).collect();
        for source in [&self.tasks.file_source, &self.tasks.dns_source]
            .into_iter()
            .flatten()
        {
            kept.extend(source.announced());
        }
        if let Some(etcd) = &self.tasks.etcd_source {
            kept.extend(etcd.announced());
        }
        kept
    }
}

/// Replaces the source in `slot` with one following `next`, which takes over the old one's
/// members; with no next one, what the old one put in goes into `gone`.
fn restart<S>(
    slot: &mut Option<SourceTask>,
    next: Option<S>,
    statics: &Statics,
    registry: &Registry,
    drain: Duration,
    gone: &mut BTreeSet<MemberId>,
) where
    S: futures_core::TryStream<Ok = Change<MemberId, MemberSpec>> + Send + 'static,
    S::Error: std::fmt::Display + Send,
{
    let previous = slot.take();
    *slot = next.map(|stream| {
        SourceTask::spawn(
            stream,
            &BTreeMap::new(),
            previous.as_ref(),
            statics,
            registry,
            drain,
        )
    });
    if slot.is_none() {
        gone.extend(previous.iter().flat_map(|p| p.leftovers(registry)));
    }
}
