//! An HTTP/2 stream's claim on a place under the connection caps, taken when its request
//! goes out on a member connection of its own, and given back when the member's part of
//! the exchange is over.
//!
//! Why at the member connection and not when the stream arrives: streams to a member that
//! speaks HTTP/2 share its one connection and need no place, and which member a stream goes
//! to is known only once it is picked. hyper hands the server every stream a read brought
//! before any of them runs, so a place charged on arrival was charged before the pick:
//! `h2load -c10 -m100 -n3000` to HTTP/2 members under `ulimit -n 256` got 2,617 capacity
//! 503s with 25 descriptors in use (round 13). A stream to an HTTP/1.1 member (or to an
//! HTTP/2 member whose connection is still to be made) claims its place as it takes a
//! member connection, and one that finds none fails with [`StreamRefused`] before anything
//! is sent: the client gets 503 (429 past its own share under the per-client cap) with
//! `Retry-After: 1`. Failover does not send it to another member (`UpstreamErrorKind::
//! Capacity`): a session pinned to this one would move (round 14: 114 of 300 pinned
//! requests were re-pinned so).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use super::place::NoPlace;
use super::stats::Refused;
use super::timeout::Progress;

/// Not claimed yet.
const FREE: u8 = 0;
/// Claimed: the stream holds its place (or rides on its connection's own, as the first does).
const CLAIMED: u8 = 1;
/// The member's part is over: a claim now (an exchange that ran on after its client left)
/// takes nothing, since nothing would give it back.
const OVER: u8 = 2;

/// An HTTP/2 request's claim, in its extensions for the member client to make, and held by
/// the server until the member's part of the exchange is over. Cloned with the request (a
/// failover attempt's copy claims the same place).
#[derive(Debug, Clone)]
pub(crate) struct StreamClaim(Arc<State>);

#[derive(Debug)]
struct State {
    progress: Arc<Progress>,
    state: AtomicU8,
    /// The last refusal (`REFUSED_*`), for the server to count if the answer is its 503
    /// or 429 (a layer may have answered otherwise since).
    refused: AtomicU8,
}

/// Not refused.
const REFUSED_NONE: u8 = 0;
/// Refused under the server's cap.
const REFUSED_SERVER: u8 = 1;
/// Refused in its client's share.
const REFUSED_CLIENT: u8 = 2;

/// An HTTP/2 stream that needed a member connection of its own found no place for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StreamRefused {
    /// Under the server's connection cap (503).
    #[error(
        "no place under the connection cap (server.max_connections) for another member connection"
    )]
    Server,
    /// In its client's share under the per-client cap (429).
    #[error("its client's share under the per-client connection cap is used up")]
    Client,
}

impl StreamClaim {
    /// A claim for a stream of `progress`'s connection.
    pub(super) fn new(progress: Arc<Progress>) -> Self {
        Self(Arc::new(State {
            progress,
            state: AtomicU8::new(FREE),
            refused: AtomicU8::new(REFUSED_NONE),
        }))
    }

    /// The request goes out on a member connection of its own: it holds a place under the
    /// connection caps until the member's part is over, unless it is the only such stream
    /// of its connection, which rides on the connection's own. Once is enough: a second
    /// claim (failover's next attempt) holds the first's.
    ///
    /// # Errors
    ///
    /// [`StreamRefused`] when no place is to be had; nothing is held then.
    pub(crate) fn claim(&self) -> Result<(), StreamRefused> {
        if self.0.state.load(Ordering::Acquire) != FREE {
            return Ok(());
        }
        if let Err(no) = self.0.progress.claim_stream() {
            let (why, code) = match no {
                NoPlace::Server => (StreamRefused::Server, REFUSED_SERVER),
                NoPlace::Client => (StreamRefused::Client, REFUSED_CLIENT),
            };
            self.0.refused.store(code, Ordering::Relaxed);
            return Err(why);
        }
        let claimed =
            self.0
                .state
                .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Acquire);
        if claimed.is_err() {
            // over meanwhile: nothing would give it back
            self.0.progress.exchange_over();
        }
        Ok(())
    }

    /// Why its last claim was refused, if one was.
    fn refused(&self) -> Option<StreamRefused> {
        match self.0.refused.load(Ordering::Relaxed) {
            REFUSED_SERVER => Some(StreamRefused::Server),
            REFUSED_CLIENT => Some(StreamRefused::Client),
            _ => None,
        }
    }

    /// The member's part of the exchange is over (its answer read whole, or failed), or
    /// the request ended first: the place goes back. Once; later claims take nothing.
    pub(super) fn release(&self) {
        if self.0.state.swap(OVER, Ordering::AcqRel) == CLAIMED {
            self.0.progress.exchange_over();
        }
    }
}

/// Counts a stream answered `status` after its claim was refused (the answer the refusal
/// became, whichever layer made it) with the requests refused for it:
/// `lb_client_requests_refused_total{reason="capacity"}` for the server's cap, said at WARN
/// once a second; with the connections the per-client cap refused for its client's share.
/// A stream answered otherwise (a layer's own answer) is not counted.
pub(super) fn count_refused(progress: &Progress, claim: &StreamClaim, status: http::StatusCode) {
    match claim.refused() {
        Some(StreamRefused::Server) if status == http::StatusCode::SERVICE_UNAVAILABLE => {
            stream_refused();
            progress.note_refused(
                Refused::Capacity,
                Some(&"an HTTP/2 stream with no place for a member connection of its own"),
            );
        }
        Some(StreamRefused::Client) if status == http::StatusCode::TOO_MANY_REQUESTS => {
            progress.stats().refuse_per_client();
        }
        _ => {}
    }
}

/// Says, at most once a second, that HTTP/2 streams are being refused for want of places.
#[cold]
pub(super) fn stream_refused() {
    static BUDGET: tower_balancer::log_budget::LogBudget =
        tower_balancer::log_budget::LogBudget::warn(1, "HTTP/2 streams refused at the cap");
    if BUDGET.admit() {
        tracing::warn!(
            "HTTP/2 streams are refused with 503: each needs a member connection, and the \
             connection cap (server.max_connections, from the open-file limit) is full"
        );
    }
}
