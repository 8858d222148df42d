//! Requests waiting for a member with room.
//!
//! Why a queue in the registry, and not in the layer: a member with a limit on requests in
//! flight ([`Member::max_in_flight`], Apache `max=`, HAProxy `maxconn`) frees room when a
//! request on it finishes, which is when that request's [`InFlight`] guard drops, wherever
//! its response body ends. The guard reaches this registry-wide state through the member, so
//! the freed slot goes straight to the first waiting request that can use it, in arrival
//! order, and no request arriving later can take it first (HAProxy's per-backend queue).
//!
//! A waiting request pinned to a member by a sticky route waits for that member only; an
//! unpinned one takes the first member that frees room and that it has not tried yet.
//! Requests enqueue and slots are handed over under one lock, so a slot freed while a
//! request is about to wait is never lost; members without a limit never take it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::member::Member;
use super::metrics::{Durations, LatencyHistogram};
use super::stats::{end, InFlight};
use crate::strategy::Tried;

/// The requests of one registry waiting for a member with room, and their counters.
#[derive(Default)]
pub struct WaitQueue {
    waiters: Mutex<VecDeque<Waiter>>,
    depth: AtomicU64,
    queued: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    waited: Durations,
}

/// One waiting request: what it may take, and where to send the slot.
pub(crate) struct Waiter {
    /// The serial of the member a sticky route pins it to.
    pinned: Option<u64>,
    /// Whether the pin is strict (`nofailover`): no other member may take it.
    strict: bool,
    tried: Tried,
    since: Instant,
    slot: oneshot::Sender<InFlight>,
}

impl Waiter {
    /// A request waiting for `pinned` (a member's serial), or for any member not in `tried`;
    /// its slot arrives on `slot`.
    pub(crate) fn new(
        pinned: Option<u64>,
        strict: bool,
        tried: Tried,
        slot: oneshot::Sender<InFlight>,
    ) -> Self {
        Self {
            pinned,
            strict,
            tried,
            since: Instant::now(),
            slot,
        }
    }

    fn accepts(&self, member: &Member) -> bool {
        if self.slot.is_closed() {
            return false;
        }
        match self.pinned {
            Some(serial) => member.serial() == serial && member.serves_pinned(),
            None => member.takes_new() && !self.tried.contains(member),
        }
    }
}

/// The queue's lock, held while a request decides to wait.
pub(crate) struct Waiters<'a> {
    queue: &'a WaitQueue,
    list: MutexGuard<'a, VecDeque<Waiter>>,
}

impl Waiters<'_> {
    /// Requests waiting now (not counting those that gave up).
    pub(crate) fn len(&self) -> u64 {
        self.live()
    }

    /// Adds a waiting request at the back.
    pub(crate) fn push(&mut self, waiter: Waiter) {
        // requests that gave up leave their entry behind; sweep before the list grows
        if self.list.len() >= 16 && self.list.len().is_multiple_of(16) {
            self.list.retain(|w| !w.slot.is_closed());
        }
        self.list.push_back(waiter);
        self.queue.queued.fetch_add(1, Ordering::Relaxed);
        self.queue.depth.store(self.live(), Ordering::Relaxed);
    }

    fn live(&self) -> u64 {
        self.list.iter().filter(|w| !w.slot.is_closed()).count() as u64
    }

    /// Hands `slot` to the first waiting request that accepts its member; gives it back
    /// when none does.
    fn hand_over(&mut self, mut slot: InFlight) -> Result<(), InFlight> {
        while let Some(i) = self.list.iter().position(|w| w.accepts(slot.member())) {
            let Some(waiter) = self.list.remove(i) else {
                break;
            };
            let since = waiter.since;
            match waiter.slot.send(slot) {
                Ok(()) => {
                    self.queue.waited.observe(since.elapsed());
                    self.queue.depth.store(self.live(), Ordering::Relaxed);
                    return Ok(());
                }
                // it gave up just now: the next one
                Err(back) => slot = back,
            }
        }
        self.list.retain(|w| !w.slot.is_closed());
        self.queue.depth.store(self.live(), Ordering::Relaxed);
        Err(slot)
    }
}

impl WaitQueue {
    pub(crate) fn lock(&self) -> Waiters<'_> {
        Waiters {
            queue: self,
            // every change is one push or remove: a panic elsewhere leaves the list whole
            list: self.waiters.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Requests waiting now (as of the last change to the queue).
    #[must_use]
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Requests that ever had to wait.
    #[must_use]
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests that waited the whole queue timeout and were answered 503.
    #[must_use]
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// Requests refused because the queue was full.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// How long requests waited: until they got a member, their client gave up, or the
    /// whole queue timeout.
    #[must_use]
    pub fn wait_times(&self) -> LatencyHistogram {
        self.waited.histogram()
    }

    pub(crate) fn note_timeout(&self, waited: std::time::Duration) {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
        self.waited.observe(waited);
        self.forget_gone();
    }

    /// A request whose client went away after `waited` in the queue: its wait is counted
    /// with the others', and its entry dropped.
    pub(crate) fn note_gave_up(&self, waited: std::time::Duration) {
        self.waited.observe(waited);
        self.forget_gone();
    }

    /// Drops the entries of requests that gave up (timed out, or their client left).
    pub(crate) fn forget_gone(&self) {
        let mut waiters = self.lock();
        waiters.list.retain(|w| !w.slot.is_closed());
        let n = waiters.list.len() as u64;
        self.depth.store(n, Ordering::Relaxed);
    }

    pub(crate) fn note_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A request on `member` (which has a limit) finished: its slot goes to the first
    /// waiting request that can use it, or is freed.
    #[inline(never)]
    pub(crate) fn release(&self, member: &Arc<Member>) {
        let mut waiters = self.lock();
        let room = member.stats().in_flight() <= u64::from(member.max_in_flight());
        if room && !waiters.list.is_empty() {
            match waiters.hand_over(InFlight::adopt(member.clone())) {
                Ok(()) => return,
                Err(slot) => slot.disarm(),
            }
        }
        // under the lock: a request deciding to wait sees this room
        end(member);
    }

    /// Offers the room `members` have now to the waiting requests (after a change in the
    /// registry: a member joined, came back, or its limit was raised).
    pub(crate) fn offer(&self, members: &[Arc<Member>]) {
        let mut waiters = self.lock();
        // a pinned member that left or stopped serving: its waiters go to any member, or,
        // pinned strictly, are answered at once (their channel closes: 503)
        waiters.list.retain_mut(|w| {
            let Some(serial) = w.pinned else {
                return true;
            };
            let serves = members
                .iter()
                .any(|m| m.serial() == serial && m.serves_pinned());
            if !serves {
                w.pinned = None;
            }
            serves || !w.strict
        });
        for member in members {
            while waiters.list.iter().any(|w| w.accepts(member)) {
                let Some(slot) = InFlight::try_start(member.clone()) else {
                    break;
                };
                if let Err(slot) = waiters.hand_over(slot) {
                    slot.end_quietly();
                    break;
                }
            }
        }
        let live = waiters.live();
        self.depth.store(live, Ordering::Relaxed);
    }
}

impl fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitQueue")
            .field("depth", &self.depth())
            .field("queued", &self.queued())
            .field("timed_out", &self.timed_out())
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}
