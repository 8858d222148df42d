//! Per-client request budgets in bounded memory: the generic cell rate algorithm.
//!
//! Why GCRA and our own table rather than the `governor` crate: GCRA keeps one number per
//! client (the time its budget is next full), which is all a token bucket needs; `governor`'s
//! keyed store grows with every address it has seen until it is pruned by hand, and a
//! flood from many addresses (trivial with IPv6) must not grow memory. Here the table holds
//! at most `capacity` clients: a client whose budget is full again is the same as one never
//! seen, so those entries go first; past that an arbitrary entry is forgotten, which only
//! ever gives that client a fresh, full budget (more lenient, never a wrong refusal).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::client_key::ClientKey;

/// Shards, so workers on several threads rarely wait on one lock.
const SHARDS: usize = 16;

/// Budgets of `rate` requests a second, `burst` at once, for at most `capacity` clients.
#[derive(Debug)]
pub(crate) struct RateTable {
    /// Nanoseconds between two requests at the steady rate.
    interval: u64,
    /// How far ahead of now a client's next-full time may run: `(burst - 1) × interval`.
    tolerance: u64,
    per_shard: usize,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Debug, Default)]
struct Shard {
    /// Each client's theoretical arrival time, in nanoseconds after `epoch`.
    next: HashMap<ClientKey, u64>,
    /// When full budgets were last swept out.
    swept: u64,
}

impl RateTable {
    /// `rate` requests a second (above 0), `burst` at once (at least 1).
    pub(crate) fn new(rate: f64, burst: u32, capacity: usize) -> Self {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let interval = (1e9 / rate).clamp(1.0, 1e18) as u64;
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1) - 1)),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            epoch: Instant::now(),
            hasher: std::collections::hash_map::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes one request from `key`'s budget at `now`; when it is spent, how long until the
    /// next request would pass.
    pub(crate) fn take(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        #[allow(clippy::cast_possible_truncation)]
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        #[allow(clippy::cast_possible_truncation)]
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let tat = shard.next.get(&key).map_or(now, |&t| t.max(now));
        if tat - now > self.tolerance {
            return Err(Duration::from_nanos(tat - now - self.tolerance));
        }
        let next = tat.saturating_add(self.interval);
        if !shard.next.contains_key(&key) && shard.next.len() >= self.per_shard {
            self.make_room(&mut shard, now);
        }
        shard.next.insert(key, next);
        Ok(())
    }

    /// Frees one place in a full shard: clients whose budget is full again first (at most
    /// once a second, a sweep costs the shard's size), else any one client.
    fn make_room(&self, shard: &mut Shard, now: u64) {
        if now.saturating_sub(shard.swept) >= 1_000_000_000 {
            shard.swept = now;
            shard.next.retain(|_, &mut t| t > now);
        }
        if shard.next.len() >= self.per_shard {
            if let Some(&k) = shard.next.keys().next() {
                shard.next.remove(&k);
            }
        }
    }

    /// Clients remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).next.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> ClientKey {
        ClientKey::of(std::net::IpAddr::V4(i.into()))
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let t = RateTable::new(10.0, 5, 100);
        let now = Instant::now();
        for _ in 0..5 {
            assert!(t.take(key(1), now).is_ok());
        }
        let wait = t.take(key(1), now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // another client has its own budget
        assert!(t.take(key(2), now).is_ok());
        // one more every 100 ms
        assert!(t.take(key(1), now + Duration::from_millis(99)).is_err());
        assert!(t.take(key(1), now + Duration::from_millis(100)).is_ok());
        assert!(t.take(key(1), now + Duration::from_millis(100)).is_err());
        // idle long enough, the whole burst again
        let later = now + Duration::from_secs(10);
        for _ in 0..5 {
            assert!(t.take(key(1), later).is_ok());
        }
        assert!(t.take(key(1), later).is_err());
    }

    #[test]
    fn a_flood_of_addresses_stays_within_capacity() {
        let t = RateTable::new(1.0, 1, 1_000);
        let now = Instant::now();
        for i in 0..100_000 {
            assert!(t.take(key(i), now).is_ok());
        }
        assert!(t.len() <= 1_000 + SHARDS, "{} clients kept", t.len());
        // the flood never refuses a client wrongly, and a spent budget stays spent while
        // its entry is kept
        assert!(t.take(key(99_999), now).is_err());
    }

    #[test]
    fn budgets_full_again_are_swept_first() {
        // 1,600 places in 16 shards of 100: 800 clients, then 800 more once the first
        // ones' budgets are full again; ~50 of each a shard, never 100 of the new ones
        let t = RateTable::new(1.0, 1, 1_600);
        let now = Instant::now();
        for i in 0..800 {
            assert!(t.take(key(i), now).is_ok());
        }
        let later = now + Duration::from_secs(5);
        for i in 10_000..10_800 {
            assert!(t.take(key(i), later).is_ok());
        }
        assert!(t.len() <= 1_600);
        for i in 10_000..10_800 {
            assert!(t.take(key(i), later).is_err(), "client {i} was forgotten");
        }
    }
}
