//! The places an HTTP/2 stream's or tunnel's member connection holds: one under the
//! server's connection cap, and one from its client's share under the per-client cap.
//!
//! Why both: the server's cap keeps the process within its descriptors, the client's keeps
//! one client from taking them from everybody else. An HTTP/2 connection is counted once at
//! accept by each, but its streams may each need a member connection; counted only by the
//! server's, one client's streams could hold a hundred connections' worth under a
//! per-client cap of a few.

use tokio::sync::OwnedSemaphorePermit;

use super::tasks::Tasks;
use crate::limits::{ClientShare, Place};

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

/// A place under both caps, the client's first (when it has one): nothing is taken from the
/// server's for a stream its client may not open.
pub(super) fn member_place(
    client: Option<&ClientShare>,
    tasks: &Tasks,
) -> Result<MemberPlace, NoPlace> {
    let client = client
        .map(ClientShare::member_place)
        .transpose()
        .map_err(|()| NoPlace::Client)?;
    let server = tasks.member_place().map_err(|()| NoPlace::Server)?;
    Ok(MemberPlace {
        _server: server,
        _client: client,
    })
}
