//! Which members a members file or DNS source put in the registry, so a reload that stops
//! or replaces the source takes them out again.
//!
//! Why: the members a balancer starts with are known when the file is built, but a members
//! file or DNS source adds members while the balancer runs. A reload that dropped the
//! source (or pointed it elsewhere) used to stop its task and leave every member it had
//! added since start-up in the registry, serving, for ever. Each source now says what it
//! put in; a source that replaces another removes what the old one put in and it does not
//! name, once its own first answer is in (so members are not drained while it reads), and
//! a source that is dropped for good has its members drained by the reload.
//!
//! The configuration file's own members are never a source's to change: a members file or
//! DNS name equal to one of them is said once and left alone, so a source that stops
//! naming it cannot drain a member the file still declares.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::{Stream, TryStream};
use pin_project_lite::pin_project;
use tower::discover::Change;
use tower_balancer::registry::{AdminState, MemberId, MemberSpec, Registry};

use tower_balancer::discovery::DnsDiscovery;

use super::members::MembersFile;
use super::plan::AbortOnDrop;

/// The members a source names now (inserted and not removed since), shared with its task.
#[derive(Debug, Clone, Default)]
struct Announced(Arc<Mutex<BTreeMap<MemberId, MemberSpec>>>);

impl Announced {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<MemberId, MemberSpec>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The ids the configuration file itself declares for one balancer, shared with its
/// sources (a reload replaces the set before they see another change).
#[derive(Debug, Clone, Default)]
pub(crate) struct Statics(Arc<Mutex<BTreeSet<MemberId>>>);

impl Statics {
    /// The file's members.
    pub(crate) fn new(ids: impl IntoIterator<Item = MemberId>) -> Self {
        Self(Arc::new(Mutex::new(ids.into_iter().collect())))
    }

    /// The next file's members.
    pub(crate) fn set(&self, ids: impl IntoIterator<Item = MemberId>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = ids.into_iter().collect();
    }

    /// Whether the file declares `id`.
    pub(crate) fn contains(&self, id: &MemberId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }
}

/// A running members file or DNS source: its task, and the members it put in the registry.
#[derive(Debug)]
pub(crate) struct SourceTask {
    _task: AbortOnDrop,
    announced: Announced,
    /// What it removed and may still be draining (a stopped task finishes no drain).
    removing: Removing,
}

/// The ids a source removed and has not named again since.
#[derive(Debug, Clone, Default)]
struct Removing(Arc<Mutex<BTreeSet<MemberId>>>);

impl Removing {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeSet<MemberId>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SourceTask {
    /// Applies `stream` to `registry` until the handle is dropped, draining members it
    /// removes for `drain`; `named` are the members it put in before it runs (a members
    /// file's first read). Taking over from `previous` (a reload), it removes the members
    /// that one put in and it does not name, once its first changes are applied.
    pub(crate) fn spawn<S>(
        stream: S,
        named: &BTreeMap<MemberId, MemberSpec>,
        previous: Option<&Self>,
        statics: &Statics,
        registry: &Registry,
        drain: Duration,
    ) -> Self
    where
        S: TryStream<Ok = Change<MemberId, MemberSpec>> + Send + 'static,
        S::Error: fmt::Display + Send,
    {
        let before = previous
            .map(|p| p.announced.with(|a| a.clone()))
            .unwrap_or_default();
        let mut handed: BTreeSet<MemberId> = before.keys().cloned().collect();
        handed.extend(previous.map(|p| p.draining(registry)).unwrap_or_default());
        let previous = (!handed.is_empty()).then_some(handed);
        // until the handover, the previous source's members are this one's to remove
        let mut announced = before;
        announced.extend(named.iter().map(|(id, s)| (id.clone(), s.clone())));
        let announced = Announced(Arc::new(Mutex::new(announced)));
        let removing = Removing::default();
        let owning = Owning {
            inner: stream,
            announced: announced.clone(),
            removing: removing.clone(),
            statics: statics.clone(),
            shadowed: BTreeSet::new(),
            previous,
            own: BTreeSet::new(),
            handover: Vec::new(),
        };
        Self {
            _task: AbortOnDrop::spawn(registry.discover(owning).drain_removed(drain)),
            announced,
            removing,
        }
    }

    /// Follows a members file from start-up (or in a balancer a reload added): the
    /// registry already holds its first read.
    pub(crate) fn members_file(
        file: MembersFile,
        statics: &Statics,
        registry: &Registry,
        drain: Duration,
    ) -> Self {
        let named = file.known().clone();
        Self::spawn(file.into_stream(), &named, None, statics, registry, drain)
    }

    /// Follows DNS from start-up (or in a balancer a reload added).
    pub(crate) fn dns(
        dns: DnsDiscovery,
        statics: &Statics,
        registry: &Registry,
        drain: Duration,
    ) -> Self {
        Self::spawn(
            dns.into_stream(),
            &BTreeMap::new(),
            None,
            statics,
            registry,
            drain,
        )
    }

    /// The members this source (or the one it replaced, before its handover) put in the
    /// registry and has not removed.
    pub(crate) fn announced(&self) -> BTreeSet<MemberId> {
        self.announced.with(|a| a.keys().cloned().collect())
    }

    /// The members this source removed that are still draining: its task ends no drain
    /// once stopped.
    fn draining(&self, registry: &Registry) -> BTreeSet<MemberId> {
        let snapshot = registry.load();
        self.removing.with(|r| {
            r.retain(|id| {
                snapshot
                    .get(id.as_str())
                    .is_some_and(|m| m.state() == AdminState::Draining)
            });
            r.clone()
        })
    }

    /// What stopping this source leaves to drain: the members it names, and the ones it
    /// was draining.
    pub(crate) fn leftovers(&self, registry: &Registry) -> BTreeSet<MemberId> {
        let mut ids = self.announced();
        ids.extend(self.draining(registry));
        ids
    }

    /// The member this source names as `id`, when it names one.
    pub(crate) fn spec(&self, id: &MemberId) -> Option<MemberSpec> {
        self.announced.with(|a| a.get(id).cloned())
    }
}

/// Drains, for `drain`, the members of `registry` no one keeps: the ones `gone` (what
/// sources a reload stopped left: see [`SourceTask::leftovers`]), unless `kept` (the new
/// file's members and the running sources' ones) names it. The handle ends when the last
/// of them is removed.
pub(crate) fn retire(
    registry: &Registry,
    gone: BTreeSet<MemberId>,
    kept: &BTreeSet<MemberId>,
    drain: Duration,
) -> Option<AbortOnDrop> {
    let mut ids = gone;
    ids.retain(|id| !kept.contains(id));
    if ids.is_empty() {
        return None;
    }
    tracing::info!(members = ?ids, ?drain, "members of a stopped discovery source drain");
    let removes: Vec<Result<_, std::convert::Infallible>> =
        ids.into_iter().map(|id| Ok(Change::Remove(id))).collect();
    Some(AbortOnDrop::spawn(
        registry
            .discover(futures_util::stream::iter(removes))
            .drain_removed(drain),
    ))
}

pin_project! {
    /// A source's changes, noting what it inserts and removes, and after its first changes
    /// removing what the source it replaced had put in and it does not name.
    struct Owning<S> {
        #[pin]
        inner: S,
        announced: Announced,
        removing: Removing,
        // the configuration file's own members: this source leaves them alone
        statics: Statics,
        // the file's members this source named too, said once each
        shadowed: BTreeSet<MemberId>,
        // the replaced source's members, until this one's first changes are read
        previous: Option<BTreeSet<MemberId>>,
        // what this source inserted before the handover
        own: BTreeSet<MemberId>,
        handover: Vec<MemberId>,
    }
}

impl<S> Stream for Owning<S>
where
    S: TryStream<Ok = Change<MemberId, MemberSpec>>,
{
    type Item = Result<Change<MemberId, MemberSpec>, S::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(id) = this.handover.pop() {
                this.announced.with(|a| a.remove(&id));
                if this.statics.contains(&id) {
                    continue;
                }
                this.removing.with(|r| r.insert(id.clone()));
                return Poll::Ready(Some(Ok(Change::Remove(id))));
            }
            match this.inner.as_mut().try_poll_next(cx) {
                Poll::Ready(Some(Ok(change))) => {
                    let id = match &change {
                        Change::Insert(id, spec) => {
                            this.announced.with(|a| a.insert(id.clone(), spec.clone()));
                            if this.previous.is_some() {
                                this.own.insert(id.clone());
                            }
                            id
                        }
                        Change::Remove(id) => {
                            this.announced.with(|a| a.remove(id));
                            this.own.remove(id);
                            id
                        }
                    };
                    if this.statics.contains(id) {
                        if this.shadowed.insert(id.clone()) {
                            tracing::warn!(
                                member = %id,
                                "a discovery source names a member the configuration file declares: the file's member stays as the file says"
                            );
                        }
                        continue;
                    }
                    this.shadowed.remove(id);
                    let removing = matches!(change, Change::Remove(_));
                    this.removing.with(|r| {
                        if removing {
                            r.insert(id.clone())
                        } else {
                            r.remove(id)
                        }
                    });
                    return Poll::Ready(Some(Ok(change)));
                }
                Poll::Ready(other) => return Poll::Ready(other),
                Poll::Pending => {
                    // the first answer is in when the source waits after giving changes;
                    // one that fails gives none, and the old members stay
                    if this.own.is_empty() {
                        return Poll::Pending;
                    }
                    let Some(previous) = this.previous.take() else {
                        return Poll::Pending;
                    };
                    let own = std::mem::take(this.own);
                    this.handover
                        .extend(previous.into_iter().filter(|id| !own.contains(id)));
                    if this.handover.is_empty() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(id: &str) -> MemberSpec {
        MemberSpec::new(
            MemberId::new(id).unwrap(),
            format!("http://{id}.test").parse().unwrap(),
        )
    }

    fn ids(r: &Registry) -> Vec<String> {
        let snap = r.load();
        let mut v: Vec<String> = snap
            .members()
            .iter()
            .map(|m| format!("{}:{}", m.id(), m.state()))
            .collect();
        v.sort();
        v
    }

    type Tx = tokio::sync::mpsc::UnboundedSender<Result<Change<MemberId, MemberSpec>, String>>;

    fn channel() -> (
        Tx,
        impl TryStream<Ok = Change<MemberId, MemberSpec>, Error = String> + Send + 'static,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        (tx, stream)
    }

    /// A source following `stream` into `r`, with no members of the file's own.
    fn follow(
        stream: impl TryStream<Ok = Change<MemberId, MemberSpec>, Error = String> + Send + 'static,
        previous: Option<&SourceTask>,
        r: &Registry,
        drain: Duration,
    ) -> SourceTask {
        SourceTask::spawn(
            stream,
            &BTreeMap::new(),
            previous,
            &Statics::default(),
            r,
            drain,
        )
    }

    fn insert(tx: &Tx, id: &str) {
        tx.send(Ok(Change::Insert(MemberId::new(id).unwrap(), spec(id))))
            .unwrap();
    }

    async fn settle() {
        // past the discovery's batching hold
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_says_what_it_put_in_and_took_out() {
        let r = Registry::new();
        let (tx, stream) = channel();
        let source = follow(stream, None, &r, Duration::ZERO);
        insert(&tx, "a");
        insert(&tx, "b");
        settle().await;
        tx.send(Ok(Change::Remove(MemberId::new("a").unwrap())))
            .unwrap();
        settle().await;
        let names: Vec<String> = source.announced().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(ids(&r), ["b:active"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replacing_source_removes_what_the_old_one_put_in_only_after_its_first_answer() {
        let r = Registry::new();
        let (tx, stream) = channel();
        let old = follow(stream, None, &r, Duration::ZERO);
        insert(&tx, "a");
        insert(&tx, "b");
        settle().await;
        let (tx2, stream2) = channel();
        let new = follow(stream2, Some(&old), &r, Duration::from_secs(5));
        drop(old);
        // an error is no answer: the old members stay
        tx2.send(Err("resolver down".to_owned())).unwrap();
        settle().await;
        assert_eq!(ids(&r), ["a:active", "b:active"]);
        insert(&tx2, "b");
        insert(&tx2, "c");
        settle().await;
        assert_eq!(ids(&r), ["a:draining", "b:active", "c:active"]);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(ids(&r), ["b:active", "c:active"]);
        let names: Vec<String> = new.announced().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["b", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_leaves_what_a_source_names_and_drains_and_retiring_spares_the_kept() {
        let r = Registry::new();
        r.insert(spec("kept")).unwrap();
        let (tx, stream) = channel();
        let source = follow(stream, None, &r, Duration::from_secs(5));
        insert(&tx, "a");
        insert(&tx, "b");
        settle().await;
        tx.send(Ok(Change::Remove(MemberId::new("b").unwrap())))
            .unwrap();
        settle().await;
        assert_eq!(ids(&r), ["a:active", "b:draining", "kept:active"]);
        // stopped mid-drain: b would stay draining for ever
        let gone = source.leftovers(&r);
        drop(source);
        let kept: BTreeSet<MemberId> = [MemberId::new("kept").unwrap()].into();
        let task = retire(&r, gone, &kept, Duration::from_secs(5)).unwrap();
        settle().await;
        assert_eq!(ids(&r), ["a:draining", "b:draining", "kept:active"]);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(ids(&r), ["kept:active"]);
        assert!(task.is_finished());
        assert!(retire(&r, kept.clone(), &kept, Duration::ZERO).is_none());
    }
}
