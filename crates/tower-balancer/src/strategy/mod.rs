//! Pluggable member selection.
//!
//! Why a trait and not an enum: every deployment has its own idea of "best member" (a zone,
//! a tenant, a canary share). [`Strategy`] is a small trait users implement; the shipped
//! strategies implement it the same way:
//!
//! | strategy | Apache / nginx / HAProxy / Envoy | pick cost |
//! |---|---|---|
//! | [`RoundRobin`] (smooth, weighted) | `byrequests` / default / `roundrobin` / `ROUND_ROBIN` | O(1) |
//! | [`LeastOutstanding`] | `bybusyness` / `least_conn` / `leastconn` | O(1) idle, O(n) busy |
//! | [`ByTraffic`] | `bytraffic` | O(n) |
//! | [`PowerOfTwo`] over peak EWMA | — / — / — / `LEAST_REQUEST` | O(1) |
//! | [`WeightedRandom`] | — / `random` / `random` / `RANDOM` | O(1) |
//! | [`RingHash`] | — / `hash consistent` / `hash-type consistent` / `RING_HASH` | O(log n) |
//! | [`Maglev`] | — / — / — / `MAGLEV` | O(1) |
//!
//! A strategy precomputes a table per tier when the registry publishes a snapshot, and picks
//! from it per request with no lock and no allocation. It yields candidates in order: asked
//! again with the previous picks excluded ([`Tried`]), it gives the next one, which is how
//! failover moves on. A [`Picker`] attaches a strategy to a [`Registry`](crate::registry::Registry)
//! and walks the tiers (priority sets, then hot standby) the same way for every strategy.

mod by_traffic;
mod hash;
mod least_outstanding;
mod maglev;
mod p2c;
mod pick;
mod picker;
mod ring_hash;
mod round_robin;
mod weighted_random;

pub use by_traffic::ByTraffic;
pub use hash::{hash_key, BoundedLoad, InvalidLoadFactor, HASH_SEED};
pub use least_outstanding::{LeastOutstanding, ScanTable};
pub use maglev::{Maglev, MaglevTable};
pub use p2c::PowerOfTwo;
pub use pick::{PickContext, Strategy, Tried, MAX_TRIED};
pub use picker::{PickError, Picker};
pub use ring_hash::{Ring, RingHash};
pub use round_robin::{RoundRobin, RoundRobinTable, DEFAULT_MAX_SCHEDULE};
pub use weighted_random::{AliasTable, WeightedRandom};
