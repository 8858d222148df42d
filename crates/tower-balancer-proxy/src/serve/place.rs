//! The places an HTTP/2 stream's or tunnel's member connection holds: one under the
//! server's connection cap, and one from its client's share under the per-client cap.
//!
//! Why both: the server's cap keeps the process within its descriptors, the client's keeps
//! one client from taking them from everybody else. An HTTP/2 connection is counted once at
//! accept by each, but its streams may each need a member connection; counted only by the
//! server's, one client's streams could hold a hundred connections' worth under a
//! per-client cap of a few.
//!
//! Behind a trusted proxy the connections are the proxy's, and not capped; each request
//! under way of a client behind it (by `X-Forwarded-For`) takes a connection's places from
//! that client's share instead, for as long as it is answered.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedSemaphorePermit;

use super::config::ServeConfig;
use super::tasks::Tasks;
use crate::limits::{ClientShare, Place};

/// Where a connection's requests take their places under the per-client cap, when one is
/// set.
#[derive(Debug)]
pub(crate) enum ClientSide {
    /// The peer is the client: its share.
    Own(ClientShare),
    /// The peer is a trusted proxy: its clients' shares, by the settings the connection
    /// was accepted with.
    BehindProxy(Arc<ServeConfig>),
}

/// What a member connection holds while it lasts; dropping it gives both places back.
#[derive(Debug, Default)]
pub(crate) struct MemberPlace {
    _server: Option<OwnedSemaphorePermit>,
    _client: Option<Place>,
}

/// Which cap had no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoPlace {
    /// The server's (`server.max_connections`).
    Server,
    /// The client's (`server.per_client.connections`).
    Client,
}

impl ClientSide {
    /// A connection's, accepted with `config`: its own share when it was counted, the
    /// shares of its clients when its peer is a trusted proxy (not counted) under a cap.
    pub(super) fn of(
        config: &Arc<ServeConfig>,
        counted: Option<&crate::limits::CountedConnection>,
    ) -> Option<Self> {
        match (counted, &config.client_connections) {
            (Some(own), _) => Some(Self::Own(own.share())),
            (None, Some(_)) => Some(Self::BehindProxy(config.clone())),
            (None, None) => None,
        }
    }
}

impl MemberPlace {
    /// This place, holding `client`'s too (a request's behind a trusted proxy).
    pub(super) fn with_client(mut self, client: Option<Place>) -> Self {
        if client.is_some() {
            self._client = client;
        }
        self
    }
}

/// A place under both caps, the client's first (when it has one): nothing is taken from the
/// server's for a stream its client may not open.
pub(super) fn member_place(
    client: Option<&ClientSide>,
    tasks: &Tasks,
) -> Result<MemberPlace, NoPlace> {
    let client = match client {
        Some(ClientSide::Own(share)) => Some(share.member_place().map_err(|()| NoPlace::Client)?),
        _ => None,
    };
    let server = tasks.member_place().map_err(|()| NoPlace::Server)?;
    Ok(MemberPlace {
        _server: server,
        _client: client,
    })
}

/// Behind a trusted proxy, the places a request of the client `X-Forwarded-For` names takes
/// while it is answered; `None` for any other connection, and for the proxy's own requests
/// (no untrusted address in the header). `Err` when that client's share is used up.
pub(super) fn request_place(
    client: Option<&ClientSide>,
    peer: IpAddr,
    headers: &http::HeaderMap,
) -> Result<Option<Place>, ()> {
    let Some(ClientSide::BehindProxy(config)) = client else {
        return Ok(None);
    };
    let Some(limit) = &config.client_connections else {
        return Ok(None);
    };
    let real = crate::hygiene::real_client(peer, headers, &limit.trusted);
    if limit.trusted.contains(real) {
        return Ok(None);
    }
    config.client_counts.behind_proxy(real, limit).map(Some)
}

/// The places an HTTP/2 connection's streams hold: one for each stream beside the first
/// whose request went out on a member connection of its own (a
/// [`StreamClaim`](super::stream_claim::StreamClaim)) and whose member exchange is under
/// way, whichever streams those are. Streams on a member's shared HTTP/2 connection hold
/// none. Held by the connection, not by each stream: a stream that took none (the first)
/// ending while others run must leave the count at one a stream beside the first, not keep
/// one more than the streams under way need.
///
/// Counted until the member's part is over (its answer read whole, or failed), not until
/// the client has it all: a small answer waiting on a client's flow-control window holds
/// no member connection (it went back to the pool), and a client granting no window made
/// such streams hold places until `send_timeout` (round 10: ten connections asking for a
/// 9-byte page under `ulimit -n 256` had 58 streams refused with 503 and new clients
/// waiting, with 78 of 256 descriptors in use).
#[derive(Debug, Default)]
pub(super) struct StreamPlaces {
    held: Mutex<Vec<MemberPlace>>,
    /// How many are held, to skip the lock when none are.
    count: AtomicUsize,
    /// Claimed streams whose member exchange is not over.
    exchanges: AtomicU64,
}

impl StreamPlaces {
    /// A stream's request goes out on a member connection of its own: holds a place for
    /// each such stream beside the first, taking one more by `take` if needed. Nothing is
    /// counted when none is to be had.
    pub(super) fn claim(
        &self,
        take: impl FnOnce() -> Result<MemberPlace, NoPlace>,
    ) -> Result<(), NoPlace> {
        let now = self.exchanges.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = usize::try_from(now - 1).unwrap_or(usize::MAX);
        if needed == 0 {
            return Ok(());
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.len() < needed {
            match take() {
                Ok(place) => held.push(place),
                Err(no) => {
                    drop(held);
                    self.over();
                    return Err(no);
                }
            }
            self.count.store(held.len(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// A claimed stream's member exchange is over (or its request ended first): gives back
    /// the places no longer needed.
    pub(super) fn over(&self) {
        let left = self
            .exchanges
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let needed = usize::try_from(left.saturating_sub(1)).unwrap_or(usize::MAX);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.truncate(needed);
        self.count.store(held.len(), Ordering::Relaxed);
    }
}
