//! A cap on each client's open connections, enforced at accept.
//!
//! Why at accept and by closing: a client holding hundreds of idle keep-alive connections
//! takes the slots of the server's connection cap from everybody else (the slowloris
//! family). Counting per address and closing a connection past the cap at once, before a
//! byte is read, costs the server nothing (nginx `limit_conn`, HAProxy `src_conn_cur` with
//! `tcp-request connection reject`). Trusted proxies' connections are not capped: every
//! client behind them shares their address. Instead each request under way of a client
//! behind one (the first untrusted address of `X-Forwarded-For` from the right) counts as
//! one of that client's connections while it is answered, as nginx's `limit_conn` behind
//! `real_ip` counts.
//!
//! Counted in descriptors, as the server's own cap is: a connection takes two (its own and
//! the member connection its request may need), and an HTTP/2 stream beside others on its
//! connection, or an HTTP/2 tunnel, one more (its member connection) while it lasts. A
//! client's share is what `max` connections would hold: counting connections alone let one
//! HTTP/2 connection of 200 streams hold a hundred connections' worth (nginx's `limit_conn`
//! counts every HTTP/2 stream as a connection for the same reason).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::client_key::ClientKey;
use crate::hygiene::TrustedProxies;

/// At most `max` connections open at once from one client address (an IPv6 /64 counts as
/// one); its HTTP/2 streams beside others, and its HTTP/2 tunnels, take half a
/// connection's share each while they last. Behind a trusted proxy, a client's requests
/// under way count as its connections (see the module's docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConnectionLimit {
    pub(crate) max: u32,
    pub(crate) trusted: TrustedProxies,
}

impl ClientConnectionLimit {
    /// `max` connections a client (at least 1); `trusted` proxies are not capped.
    #[must_use]
    pub fn new(max: u32, trusted: TrustedProxies) -> Self {
        Self {
            max: max.max(1),
            trusted,
        }
    }
}

/// Descriptors a connection holds: its own and its member connection's.
const CONNECTION: u64 = 2;

/// Descriptors held by client (see the module's docs). Only clients with a connection open
/// have an entry, so it never holds more entries than the server has connections.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts(Mutex<HashMap<ClientKey, u64>>);

/// A client's share of descriptors, and where places are taken from it.
#[derive(Debug, Clone)]
pub(crate) struct ClientShare {
    counts: Arc<ConnectionCounts>,
    key: ClientKey,
    /// `max` connections' descriptors.
    cap: u64,
}

/// One counted connection; dropping it frees its places.
#[derive(Debug)]
pub(crate) struct CountedConnection(Place);

/// Descriptors taken from a client's share; dropping it gives them back.
#[derive(Debug)]
pub(crate) struct Place {
    share: ClientShare,
    n: u64,
}

impl ConnectionCounts {
    /// Counts a connection from `peer` under `limit`; `None` when the client is at its cap.
    /// Trusted proxies are never counted.
    pub(crate) fn open(
        self: &Arc<Self>,
        peer: IpAddr,
        limit: &ClientConnectionLimit,
    ) -> Result<Option<CountedConnection>, ()> {
        if limit.trusted.contains(peer) {
            return Ok(None);
        }
        let share = ClientShare {
            counts: self.clone(),
            key: ClientKey::of(peer),
            cap: u64::from(limit.max) * CONNECTION,
        };
        share.take(CONNECTION).map(|p| Some(CountedConnection(p)))
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl ConnectionCounts {
    /// A request under way of `real`, a client behind a trusted proxy: its connections are
    /// the proxy's, so each of its requests under way takes a connection's places from its
    /// share (nginx's `limit_conn` behind `real_ip` counts the same); `Err` past it.
    pub(crate) fn behind_proxy(
        self: &Arc<Self>,
        real: IpAddr,
        limit: &ClientConnectionLimit,
    ) -> Result<Place, ()> {
        let share = ClientShare {
            counts: self.clone(),
            key: ClientKey::of(real),
            cap: u64::from(limit.max) * CONNECTION,
        };
        share.take(CONNECTION)
    }
}

impl CountedConnection {
    /// The client's share, for the places its HTTP/2 streams take.
    pub(crate) fn share(&self) -> ClientShare {
        self.0.share.clone()
    }
}

impl ClientShare {
    /// A place for one member connection of an HTTP/2 stream or tunnel; `Err` when the
    /// client's share is used up.
    pub(crate) fn member_place(&self) -> Result<Place, ()> {
        self.take(1)
    }

    fn take(&self, n: u64) -> Result<Place, ()> {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.entry(self.key).or_insert(0);
        if *held + n > self.cap {
            if *held == 0 {
                counts.remove(&self.key);
            }
            return Err(());
        }
        *held += n;
        Ok(Place {
            share: self.clone(),
            n,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let share = &self.share;
        let mut counts = share
            .counts
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = counts.get_mut(&share.key) {
            *held = held.saturating_sub(self.n);
            if *held == 0 {
                counts.remove(&share.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_cap_is_refused_until_one_closes() {
        let counts = Arc::new(ConnectionCounts::default());
        let limit = ClientConnectionLimit::new(2, TrustedProxies::parse(["10.0.0.1"]).unwrap());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = counts.open(a, &limit).unwrap();
        let _second = counts.open(a, &limit).unwrap();
        assert!(counts.open(a, &limit).is_err());
        // another client is not affected; a trusted proxy is never capped
        assert!(counts.open("192.0.2.2".parse().unwrap(), &limit).is_ok());
        for _ in 0..10 {
            assert!(matches!(
                counts.open("10.0.0.1".parse().unwrap(), &limit),
                Ok(None)
            ));
        }
        drop(first);
        assert!(counts.open(a, &limit).is_ok());
        // entries leave with their last connection
        drop(_second);
        assert_eq!(counts.clients(), 0);
    }

    #[test]
    fn streams_take_a_share_of_what_connections_would_hold() {
        let counts = Arc::new(ConnectionCounts::default());
        let limit = ClientConnectionLimit::new(3, TrustedProxies::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let conn = counts.open(a, &limit).unwrap().unwrap();
        let share = conn.share();
        // three connections' descriptors (6): the connection's 2 and 4 streams' member
        // connections
        let streams: Vec<_> = (0..4).map(|_| share.member_place().unwrap()).collect();
        assert!(share.member_place().is_err());
        // and no connection either
        assert!(counts.open(a, &limit).is_err());
        drop(streams);
        let second = counts.open(a, &limit).unwrap().unwrap();
        let _third = counts.open(a, &limit).unwrap().unwrap();
        assert!(share.member_place().is_err());
        drop(second);
        let s1 = share.member_place().unwrap();
        let _s2 = share.member_place().unwrap();
        assert!(share.member_place().is_err());
        drop(s1);
        assert!(share.member_place().is_ok());
        // a place outliving its connection gives its descriptor back all the same
        let late = share.member_place().unwrap();
        drop((conn, _third, _s2));
        assert_eq!(counts.clients(), 1);
        drop(late);
        assert_eq!(counts.clients(), 0);
        // a refusal leaves no entry behind
        let tiny = ClientConnectionLimit::new(1, TrustedProxies::default());
        let only = counts.open(a, &tiny).unwrap().unwrap();
        assert!(only.share().member_place().is_err());
        drop(only);
        assert_eq!(counts.clients(), 0);
    }
}
