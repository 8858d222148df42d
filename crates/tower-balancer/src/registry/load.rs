//! Registry-wide state that every member of one registry shares: the load bounded-load
//! hashing and P2C read, the wait queue, and panic mode as operators are told of it.
//!
//! Why apart from the members' stats: one of these exists per registry, not per member,
//! and it outlives every snapshot, so its counters go on across rebuilds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::time::Instant;

use super::queue::WaitQueue;

/// Registry-wide state shared by all members of one registry: the total in flight (bounded-load
/// hashing reads it) and the epoch latency samples are stamped against (so P2C can compare two
/// members' decayed estimates without reading the clock).
#[derive(Debug)]
pub struct RegistryLoad {
    pub(super) in_flight: AtomicU64,
    pub(super) epoch: Instant,
    queue: WaitQueue,
    /// Members inserted now start down by the health probe (`Registry::start_new_members_down`).
    new_members_down: AtomicBool,
    /// Times the registry went into panic mode, and whether it is in it, as operators are
    /// told (`panic::judged`).
    panics: AtomicU64,
    in_panic: AtomicBool,
}

impl Default for RegistryLoad {
    fn default() -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            epoch: Instant::now(),
            queue: WaitQueue::default(),
            new_members_down: AtomicBool::new(false),
            panics: AtomicU64::new(0),
            in_panic: AtomicBool::new(false),
        }
    }
}

impl RegistryLoad {
    /// Requests in flight on all members of the registry.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn new_members_down(&self) -> bool {
        self.new_members_down.load(Ordering::Acquire)
    }

    pub(crate) fn set_new_members_down(&self, down: bool) {
        self.new_members_down.store(down, Ordering::Release);
    }

    /// The requests waiting for a member with room, and its counters.
    #[must_use]
    pub const fn queue(&self) -> &WaitQueue {
        &self.queue
    }

    /// Times the registry went into panic mode: fewer members healthy than the panic
    /// threshold, so requests go to every active member, healthy or not. A member down only
    /// until its health checker's first probe answers counts as healthy here, so a start or
    /// a reload with checks is not counted; [`Snapshot::is_panic`](super::Snapshot::is_panic)
    /// is how the snapshot routes, those milliseconds included.
    #[must_use]
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Whether the registry is in panic mode now, as [`panics`](Self::panics) counts it.
    #[must_use]
    pub fn in_panic(&self) -> bool {
        self.in_panic.load(Ordering::Relaxed)
    }

    /// Panic mode began (`entered`) or ended, with `healthy` of `candidates` members healthy:
    /// counted, and said once (WARN going in, INFO coming out; in the span of the task whose
    /// change did it, a balancer's for its probes). A change of mode needs a change of a
    /// member's health, so these lines come no faster than health changes do.
    #[cold]
    pub(crate) fn note_panic(&self, entered: bool, healthy: usize, candidates: usize) {
        self.in_panic.store(entered, Ordering::Relaxed);
        if entered {
            self.panics.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                healthy,
                members = candidates,
                "panic mode: too few members are healthy; requests go to every member, healthy or not"
            );
        } else {
            tracing::info!(
                healthy,
                members = candidates,
                "panic mode over: requests go to healthy members only"
            );
        }
    }
}
