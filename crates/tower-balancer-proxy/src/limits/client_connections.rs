//! A cap on each client's open connections, enforced at accept.
//!
//! Why at accept and by closing: a client holding hundreds of idle keep-alive connections
//! takes the slots of the server's connection cap from everybody else (the slowloris
//! family). Counting per address and closing a connection past the cap at once, before a
//! byte is read, costs the server nothing (nginx `limit_conn`, HAProxy `src_conn_cur` with
//! `tcp-request connection reject`). Trusted proxies are not capped: every client behind
//! them shares their address; their clients' request rate is limited by
//! [`ClientRateLimitLayer`](super::ClientRateLimitLayer) instead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::client_key::ClientKey;
use crate::hygiene::TrustedProxies;

/// At most `max` connections open at once from one client address (an IPv6 /64 counts as
/// one), trusted proxies excepted.
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

/// Open connections by client. Only clients with a connection open have an entry, so it
/// never holds more entries than the server has connections.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts(Mutex<HashMap<ClientKey, u32>>);

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct CountedConnection {
    counts: Arc<ConnectionCounts>,
    key: ClientKey,
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
        let key = ClientKey::of(peer);
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key).or_insert(0);
        if *n >= limit.max {
            return Err(());
        }
        *n += 1;
        Ok(Some(CountedConnection {
            counts: self.clone(),
            key,
        }))
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
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
}
