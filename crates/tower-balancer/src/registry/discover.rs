//! Feeding the registry from a discovery source.
//!
//! Why a stream of changes: membership may come from DNS, a file, Kubernetes or Consul. Each
//! of them can be written as a stream of `tower::discover::Change` items, so the layers never
//! need to know where members come from, and the same stream type tower's own `Balance`
//! consumes works here.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::TryStream;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::discover::Change;

use super::handle::Registry;
use super::member::{AdminState, MemberId};
use super::spec::MemberSpec;

pin_project! {
    /// A future that applies every change from a discovery stream to a registry, until the
    /// stream ends. Made by [`Registry::discover`].
    ///
    /// An insert of a known id updates that member in place ([`Registry::upsert`]); a remove
    /// of an unknown id is ignored. A stream error or a refused change is logged with
    /// `tracing` and skipped: the last good membership stays. The same error repeated is
    /// logged once, until the source recovers or fails differently.
    ///
    /// With [`drain_removed`](Discovery::drain_removed), a remove does not cut the member:
    /// it turns [`AdminState::Draining`] (no new sessions, sticky ones still served) and
    /// leaves the registry when the grace period ends; an insert of the same id before then
    /// takes it back. When the stream ends, the future finishes the drains it started
    /// before it completes.
    #[must_use = "futures do nothing unless polled"]
    pub struct Discovery<D> {
        #[pin]
        stream: D,
        registry: Registry,
        applied: u64,
        skipped: u64,
        ended: bool,
        last_error: Option<String>,
        grace: Option<Duration>,
        draining: HashMap<MemberId, Drain>,
        timer: Option<Pin<Box<Sleep>>>,
        // changes read and not applied yet, and when the next batch may be applied
        batch: Vec<Change<MemberId, MemberSpec>>,
        hold: Option<Pin<Box<Sleep>>>,
    }
}

/// A member this discovery drains: until when, and which member in which state (one that
/// came back and left again since is another drain's).
#[derive(Debug, Clone, Copy)]
struct Drain {
    until: Instant,
    serial: u64,
    epoch: u32,
}

/// The most changes read before they are applied (the stream waits meanwhile).
const MAX_BATCH: usize = 4096;

/// The shortest time between two applied batches while changes keep coming. A change after
/// a quiet spell is applied at once; a burst (a thousand writes to etcd, a file rewritten
/// in a loop) is applied in batches at most this often, so the snapshot rebuilds (which grow
/// with the member count) cannot take over the thread that also serves requests.
const MIN_APPLY_INTERVAL: Duration = Duration::from_millis(100);

/// What a finished [`Discovery`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryReport {
    /// Changes applied to the registry.
    pub applied: u64,
    /// Stream errors and refused changes that were skipped.
    pub skipped: u64,
}

impl Registry {
    /// Drives this registry from `stream` until it ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower::discover::Change;
    /// use tower_balancer::registry::{MemberId, MemberSpec, Registry};
    ///
    /// let registry = Registry::new();
    /// let node1 = MemberId::new("node1")?;
    /// let changes = vec![
    ///     Ok::<_, std::io::Error>(Change::Insert(node1.clone(), MemberSpec::new(node1.clone(), "http://127.0.0.1:9763".parse()?))),
    ///     Ok(Change::Remove(node1)),
    /// ];
    /// let report = registry.discover(tokio_stream_from(changes)).await;
    /// assert_eq!(report.applied, 2);
    /// assert!(registry.load().is_empty());
    /// # Ok(()) }
    /// # fn tokio_stream_from<T: Unpin>(v: Vec<T>) -> impl futures_core::Stream<Item = T> {
    /// #     struct S<T>(std::collections::VecDeque<T>);
    /// #     impl<T: Unpin> futures_core::Stream for S<T> {
    /// #         type Item = T;
    /// #         fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
    /// #             std::task::Poll::Ready(self.0.pop_front())
    /// #         }
    /// #     }
    /// #     S(v.into())
    /// # }
    /// ```
    pub fn discover<D>(&self, stream: D) -> Discovery<D>
    where
        D: TryStream<Ok = Change<MemberId, MemberSpec>>,
        D::Error: fmt::Display,
    {
        Discovery {
            stream,
            registry: self.clone(),
            applied: 0,
            skipped: 0,
            ended: false,
            last_error: None,
            grace: None,
            draining: HashMap::new(),
            timer: None,
            batch: Vec::new(),
            hold: None,
        }
    }
}

impl<D> Discovery<D> {
    /// Drains removed members for `grace` before they leave the registry, instead of
    /// removing them at once: sessions pinned to a member that left DNS or the members file
    /// keep their member while it still answers, and new sessions go elsewhere.
    pub fn drain_removed(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }
}

impl<D> Future for Discovery<D>
where
    D: TryStream<Ok = Change<MemberId, MemberSpec>>,
    D::Error: fmt::Display,
{
    type Output = DiscoveryReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // read what is ready (errors are logged as they come), up to a batch
        while !*this.ended && this.batch.len() < MAX_BATCH {
            match this.stream.as_mut().try_poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => *this.ended = true,
                Poll::Ready(Some(Err(e))) => {
                    let msg = e.to_string();
                    if this.last_error.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(error = %msg, "discovery source failed; keeping the last good members");
                        *this.last_error = Some(msg);
                    }
                    *this.skipped += 1;
                }
                Poll::Ready(Some(Ok(change))) => {
                    *this.last_error = None;
                    this.batch.push(change);
                }
            }
        }
        // a hold that has run out lets the next change through at once
        let held = this
            .hold
            .as_mut()
            .is_some_and(|h| h.as_mut().poll(cx).is_pending());
        if !held {
            *this.hold = None;
            if !this.batch.is_empty() {
                let (applied, skipped) =
                    apply(this.registry, this.batch, *this.grace, this.draining);
                *this.applied += applied;
                *this.skipped += skipped;
                let mut hold = Box::pin(tokio::time::sleep(MIN_APPLY_INTERVAL));
                // registers the wake-up for the end of the hold
                let _ = hold.as_mut().poll(cx);
                *this.hold = Some(hold);
                if !*this.ended {
                    // the stream may have more ready than one batch took: read on later
                    cx.waker().wake_by_ref();
                }
            }
        }
        drain_due(this.registry, this.draining, this.timer, cx);
        if *this.ended && this.batch.is_empty() && this.draining.is_empty() {
            return Poll::Ready(DiscoveryReport {
                applied: *this.applied,
                skipped: *this.skipped,
            });
        }
        Poll::Pending
    }
}

/// Applies `batch` in order with one snapshot rebuild; how many changes were applied and
/// how many refused.
fn apply(
    registry: &Registry,
    batch: &mut Vec<Change<MemberId, MemberSpec>>,
    grace: Option<Duration>,
    draining: &mut HashMap<MemberId, Drain>,
) -> (u64, u64) {
    let (mut applied, mut skipped) = (0, 0);
    let _ = registry.update(|b| {
        for change in batch.drain(..) {
            match change {
                Change::Insert(id, mut spec) => {
                    // the key is authoritative, as in tower::discover
                    spec.id = id;
                    draining.remove(&spec.id);
                    match b.upsert(spec) {
                        Ok(_) => applied += 1,
                        Err(e) => {
                            tracing::warn!(error = %e, "discovery change refused");
                            skipped += 1;
                        }
                    }
                }
                Change::Remove(id) => {
                    let known = match grace {
                        Some(grace) => {
                            let known = b.set_state(id.as_str(), AdminState::Draining).is_ok();
                            if let Some(m) = b.get(id.as_str()).filter(|_| known) {
                                tracing::info!(member = %id, ?grace, "member left discovery; draining");
                                let drain = Drain {
                                    until: crate::deadline::deadline(Instant::now(), grace),
                                    serial: m.serial(),
                                    epoch: m.state_epoch(),
                                };
                                draining.insert(id, drain);
                            }
                            known
                        }
                        None => b.remove(id.as_str()).is_ok(),
                    };
                    applied += u64::from(known);
                }
            }
        }
        Ok::<_, std::convert::Infallible>(())
    });
    (applied, skipped)
}

/// Removes the members whose grace ended and arms the timer for the next one.
fn drain_due(
    registry: &Registry,
    draining: &mut HashMap<MemberId, Drain>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) {
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        draining.retain(|id, d| {
            let keep = d.until > now;
            if !keep {
                due.push((id.clone(), *d));
            }
            keep
        });
        if !due.is_empty() {
            // every member whose grace ended, with one rebuild
            let _ = registry.update(|b| {
                for (id, d) in due {
                    // an operator may have taken it back meanwhile (and it may have left
                    // again, another drain's to end); only the member this drain started
                    // goes, still draining
                    let still = b.get(id.as_str()).is_some_and(|m| {
                        m.state() == AdminState::Draining
                            && m.serial() == d.serial
                            && m.state_epoch() == d.epoch
                    });
                    if still && b.remove(id.as_str()).is_ok() {
                        tracing::info!(member = %id, "drained member removed");
                    }
                }
                Ok::<_, std::convert::Infallible>(())
            });
        }
        let Some(next) = draining.values().map(|d| d.until).min() else {
            *timer = None;
            return;
        };
        let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
        if sleep.deadline() != next {
            sleep.as_mut().reset(next);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "discover_tests.rs"]
mod tests;
