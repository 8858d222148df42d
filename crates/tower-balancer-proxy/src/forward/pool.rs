//! The member connection pool.
//!
//! Why a pool of our own rather than hyper-util's: a balancer already knows which member a
//! request goes to, so the pool is keyed by the member itself (its address in memory, a
//! multiply to hash) instead of a scheme and authority hashed with SipHash on every checkout
//! and return. A hyper connection goes back to the pool when its answer's head arrives,
//! without a task spawned per request to wait for the body's end (a checkout takes only a
//! connection that is ready for its next request); a connection of the own HTTP/1.1 path
//! goes back when its answer's body has been read whole.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use tokio::time::Instant;
use tower_balancer::registry::Member;

use super::h1::{Home, Io};

/// Hashes a member's address: distinct live members have distinct addresses, so a multiply
/// (Fibonacci hashing) spreads them well enough.
#[derive(Default)]
pub(crate) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One member's connections. The slot holds the member, so its address (the key) cannot be
/// taken by another member while any connection to it is pooled.
struct Slot<B> {
    member: Arc<Member>,
    idle: VecDeque<Idle<B>>,
    /// An HTTP/2 connection, shared by every request to the member, and when it was last
    /// used.
    h2: Option<(http2::SendRequest<B>, Instant)>,
    /// Connections of the client's own HTTP/1.1 path, between answers.
    own: VecDeque<OwnIdle>,
}

struct OwnIdle {
    io: Box<Io>,
    since: Instant,
}

struct Idle<B> {
    sender: http1::SendRequest<B>,
    since: Instant,
}

type Slots<B> = HashMap<usize, Slot<B>, BuildHasherDefault<AddressHasher>>;

struct Shared<B> {
    slots: Mutex<Slots<B>>,
    idle_timeout: Duration,
    /// Whether a task is closing connections idle past the timeout.
    reaping: AtomicBool,
}

/// Pooled HTTP/1.1 and HTTP/2 connections to members, closed once idle past the timeout.
pub(crate) struct Pool<B> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

fn key(member: &Arc<Member>) -> usize {
    Arc::as_ptr(member) as usize
}

impl<B: Send + 'static> Pool<B> {
    /// A pool, among those whose idle connections are closed when the process runs out of
    /// descriptors (`idle_relief`).
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        let shared = Arc::new(Shared {
            slots: Mutex::new(HashMap::default()),
            idle_timeout,
            reaping: AtomicBool::new(false),
        });
        let weak: Weak<Shared<B>> = Arc::downgrade(&shared);
        super::idle_relief::register(weak);
        Self { shared }
    }
}

impl<B: Send + 'static> super::idle_relief::CloseIdle for Shared<B> {
    /// Closes up to `most` idle HTTP/1.1 connections, to any member, idle for `idle_for` or
    /// longer, the longest idle of each member's first. (One still reading its last
    /// answer's body closes when the body is done.) HTTP/2 connections, shared by requests
    /// under way, stay.
    fn close_idle(&self, most: usize, idle_for: Duration) -> usize {
        let now = Instant::now();
        let stale = |since: Instant| now.duration_since(since) >= idle_for;
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut closed = 0;
        for slot in slots.values_mut() {
            // checkouts take from the back: the front has waited longest
            while closed < most && slot.own.front().is_some_and(|i| stale(i.since)) {
                slot.own.pop_front();
                closed += 1;
            }
            while closed < most && slot.idle.front().is_some_and(|i| stale(i.since)) {
                slot.idle.pop_front();
                closed += 1;
            }
        }
        closed
    }
}

impl<B: Send + 'static> Pool<B> {
    fn slots(&self) -> MutexGuard<'_, Slots<B>> {
        // a panic elsewhere while the lock was held leaves only connections behind
        self.shared
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection to `member` ready for a request: the one used last that is still open,
    /// not past the idle timeout and not still busy with its last answer's body. The last
    /// used first (as hyper-util's pool): it is the furthest from the member's own
    /// keep-alive timeout, and after a burst the connections left over idle out.
    pub(crate) fn checkout(&self, member: &Arc<Member>) -> Option<http1::SendRequest<B>> {
        let now = Instant::now();
        let mut slots = self.slots();
        let slot = slots.get_mut(&key(member))?;
        let mut i = slot.idle.len();
        while i > 0 {
            i -= 1;
            let idle = &slot.idle[i];
            if idle.sender.is_closed() || now.duration_since(idle.since) >= self.shared.idle_timeout
            {
                slot.idle.remove(i);
            } else if idle.sender.is_ready() {
                return slot.idle.remove(i).map(|idle| idle.sender);
            }
            // else still reading its last body: it stays
        }
        None
    }

    /// Gives back a connection whose answer's head has arrived (its body may still be on the
    /// way: it is taken again only once ready).
    pub(crate) fn checkin(&self, member: &Arc<Member>, sender: http1::SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let idle = Idle {
            sender,
            since: Instant::now(),
        };
        self.slot(member, |slot| slot.idle.push_back(idle));
    }

    /// A connection of the client's own HTTP/1.1 path to `member`, the one used last that
    /// is still open and not past the idle timeout, and when it was taken.
    pub(crate) fn checkout_own(&self, member: &Arc<Member>) -> Option<(Box<Io>, Instant)> {
        let now = Instant::now();
        loop {
            let mut idle = {
                let mut slots = self.slots();
                slots.get_mut(&key(member))?.own.pop_back()?
            };
            if now.duration_since(idle.since) < self.shared.idle_timeout && idle.io.still_open() {
                return Some((idle.io, now));
            }
        }
    }

    /// Where the own path's connections go back.
    pub(crate) fn home(&self) -> Arc<dyn Home> {
        self.shared.clone()
    }

    /// The member's HTTP/2 connection, if it has one that is open.
    pub(crate) fn h2(&self, member: &Arc<Member>) -> Option<http2::SendRequest<B>> {
        let mut slots = self.slots();
        let slot = slots.get_mut(&key(member))?;
        match &mut slot.h2 {
            Some((s, used)) if !s.is_closed() => {
                *used = Instant::now();
                Some(s.clone())
            }
            Some(_) => {
                slot.h2 = None;
                None
            }
            None => None,
        }
    }

    /// Keeps `sender` as the member's HTTP/2 connection.
    pub(crate) fn set_h2(&self, member: &Arc<Member>, sender: http2::SendRequest<B>) {
        self.slot(member, |slot| slot.h2 = Some((sender, Instant::now())));
    }

    fn slot(&self, member: &Arc<Member>, f: impl FnOnce(&mut Slot<B>)) {
        in_slot(&self.shared, member, f);
    }
}

impl<B: Send + 'static> Home for Shared<B> {
    fn checkin(self: Arc<Self>, member: &Arc<Member>, io: Box<Io>) {
        let idle = OwnIdle {
            io,
            since: Instant::now(),
        };
        in_slot(&self, member, |slot| slot.own.push_back(idle));
    }
}

fn in_slot<B: Send + 'static>(
    shared: &Arc<Shared<B>>,
    member: &Arc<Member>,
    f: impl FnOnce(&mut Slot<B>),
) {
    {
        let mut slots = shared
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = slots.entry(key(member)).or_insert_with(|| Slot {
            member: member.clone(),
            idle: VecDeque::new(),
            h2: None,
            own: VecDeque::new(),
        });
        f(slot);
    }
    reap_in_background(shared);
}

/// Starts the task that closes idle connections, unless one runs. It ends when the pool is
/// dropped (or its runtime shuts down: the next checkin starts another).
fn reap_in_background<B: Send + 'static>(shared: &Arc<Shared<B>>) {
    if shared.reaping.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        shared.reaping.store(false, Ordering::Release);
        return;
    };
    let weak = Arc::downgrade(shared);
    let every = shared.idle_timeout.max(Duration::from_millis(100));
    runtime.spawn(async move {
        let _running = Reaping(weak.clone());
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            reap(&shared);
        }
    });
}

/// Marks the reaper stopped when its task ends or is dropped.
struct Reaping<B>(Weak<Shared<B>>);

impl<B> Drop for Reaping<B> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.reaping.store(false, Ordering::Release);
        }
    }
}

/// Closes connections idle past the timeout or closed by the member, and forgets members
/// left with none.
fn reap<B>(shared: &Shared<B>) {
    let now = Instant::now();
    let mut slots = shared
        .slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let open = |since: Instant| now.duration_since(since) < shared.idle_timeout;
    slots.retain(|key, slot| {
        debug_assert_eq!(Arc::as_ptr(&slot.member) as usize, *key);
        slot.idle.retain(|i| !i.sender.is_closed() && open(i.since));
        // closed by the member while idle: let the socket go now, not at the next checkout
        slot.own.retain_mut(|i| open(i.since) && i.io.still_open());
        // an HTTP/2 connection unused past the timeout is let go (streams on it finish)
        if slot
            .h2
            .as_ref()
            .is_some_and(|(s, used)| s.is_closed() || !open(*used))
        {
            slot.h2 = None;
        }
        !slot.idle.is_empty() || slot.h2.is_some() || !slot.own.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_addresses_hash_apart() {
        let hash = |n: usize| {
            let mut h = AddressHasher::default();
            h.write_usize(n);
            h.finish()
        };
        // neighbouring allocations differ in their hash's top bits, which the table probes by
        assert_ne!(hash(0x1000) >> 57, hash(0x1040) >> 57);
        assert_ne!(hash(0x1000), hash(0x1008));
    }
}
