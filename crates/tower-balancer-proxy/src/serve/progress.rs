//! What the server knows about a connection's progress: its requests' heads, the answers
//! under way and done, what it read against what its requests carried, and the requests its
//! client abandoned.
//!
//! Why one shared record: hyper owns the connection while it serves it, and the server sees
//! it only through the socket (`timeout::Watched`) and the service it hands hyper; both
//! write here, and the socket's timers and limits read it (one task polls both, so the
//! atomics are never contended).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use http::Request;
use http_body::Body;

use super::stats::Refused;
use crate::forward::TunnelFuture;
use tower_balancer::log_budget::{LogBudget, PER_SECOND};

/// What the server knows about a connection's progress.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes read since the last request's headers were complete.
    pub(super) read_since_head: AtomicU64,
    /// Requests whose headers were complete.
    pub(super) heads: AtomicU64,
    /// Whether the last request had a body (whose bytes are then read after its head).
    pub(super) last_had_body: AtomicBool,
    /// Requests whose responses are not finished.
    pub(super) in_flight: AtomicU64,
    /// Requests whose responses are finished (an answer sent counts as activity).
    pub(super) finished: AtomicU64,
    /// The connection was handed over to an upgrade (WebSocket): no idle limit.
    pub(super) upgraded: AtomicBool,
    /// Its requests came over HTTP/2, where bytes after a head are frames of any stream,
    /// not the start of the next head.
    pub(super) h2: AtomicBool,
    /// The socket ended the connection itself: no request head was complete within the
    /// header-read limit of its start (see [`Watched::idle_expired`]).
    pub(super) cut_mid_head: AtomicBool,
    /// The server's counters, for what its requests were refused.
    pub(super) stats: super::stats::ServerStats,
    /// Over HTTP/2, the answers waiting on the client's flow-control window.
    pub(super) waiting: super::window::Waiting,
    /// Over HTTP/2 (and before a first request), what was read against what it carried.
    pub(super) overhead: super::flood::Overhead,
    /// Requests whose answers went out whole ([`Progress::finished`] less this: those
    /// abandoned).
    pub(super) answered: AtomicU64,
    /// Requests refused before the stack.
    pub(super) refused: AtomicU64,
    /// The client's address, for the lines logged when a limit closes the connection.
    pub(super) peer: Option<SocketAddr>,
    /// Over TLS, bytes the socket under rustls sent (`under_tls.rs`): a write or flush
    /// waiting on the client makes progress when this moves. 0 on plain connections, whose
    /// watch sees the socket itself.
    pub(super) sent: AtomicU64,
    /// A limit's close of this connection was counted and logged ([`Progress::note_closed`]).
    pub(super) closed_noted: AtomicBool,
    /// Set when an HTTP/2 limit tripped and the connection was asked to go away: where it
    /// stood then (see [`Progress::limit_read`]).
    pub(super) closing: OnceLock<Tripped>,
    /// An HTTP/1.1 connection's WebSocket tunnel, for the connection's task to run once
    /// hyper has handed the connection over.
    tunnel: TunnelSlot,
    /// The server's client tasks, where an HTTP/2 stream's tunnel runs.
    tasks: super::tasks::Tasks,
    /// Where its requests take places under the per-client cap, if one is set.
    client: Option<super::place::ClientSide>,
    /// Over HTTP/2, the places its streams on member connections of their own hold.
    stream_places: super::place::StreamPlaces,
    /// Over HTTP/2, its requests streaming their bodies to members, and those read whole.
    uploads: super::upload_limit::Uploads,
}

/// [`Progress`]'s tunnel, kept until the connection's task runs it.
#[derive(Default)]
struct TunnelSlot(std::sync::Mutex<Option<TunnelFuture>>);

impl std::fmt::Debug for TunnelSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelSlot")
    }
}

/// Where an HTTP/2 connection stood when a limit tripped.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tripped {
    /// Bytes read that no request paid for (`Overhead::unpaid`).
    unpaid: u64,
    heads: u64,
}

/// What a client may still send after an HTTP/2 limit tripped, while its connection goes
/// away (a `GOAWAY`, then its answers under way finish): bytes no request paid for (an
/// upload under way pays for its own), and requests started (those sent before the
/// `GOAWAY` reached it; cancelling the requests it has under way is its right). A client
/// that goes on past either is cut at once, whatever the limit that tripped.
const GRACE_BYTES: u64 = 2 << 20;
const GRACE_REQUESTS: u64 = ABANDONED;

/// Why a limit closed a client connection, as the log and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Frames that carried nothing (`flood.rs`).
    Flood,
    /// Requests abandoned as a pace.
    Resets,
    /// An answer that waited on the client's flow-control window past the send timeout.
    Window,
    /// Writes the client did not read within the send timeout.
    SendTimeout,
    /// The HTTP/2 library's own limits (`GOAWAY` with `ENHANCE_YOUR_CALM`).
    Calm,
}

/// Requests a connection's client may abandon before their answers, if they are half of
/// its requests or more, before the connection is closed (see
/// [`Progress::abandoned_too_many`]).
const ABANDONED: u64 = 128;

impl Progress {
    /// A connection from `peer` of a server counting into `stats`. Its HTTP/2 streams take
    /// places from `client`'s share, when it has one, and at most `upload_limit.max` of
    /// them stream their bodies to members at once.
    pub(super) fn counting(
        stats: super::stats::ServerStats,
        (peer, client): (SocketAddr, Option<super::place::ClientSide>),
        tasks: super::tasks::Tasks,
        upload_limit: super::upload_limit::UploadLimit,
    ) -> Self {
        Self {
            stats,
            peer: Some(peer),
            tasks,
            client,
            uploads: super::upload_limit::Uploads::new(upload_limit),
            ..Self::default()
        }
    }

    /// Its uploads over HTTP/2 (`upload_limit.rs`).
    pub(super) const fn uploads(&self) -> &super::upload_limit::Uploads {
        &self.uploads
    }

    /// A limit closes the connection, or asks it to go away: logged with the client's
    /// address, and counted, the first time only.
    #[cold]
    #[inline(never)]
    pub(super) fn note_closed(&self, why: Closed, detail: &str) {
        // once a connection: a cut write can be followed by a flush and a shutdown that
        // find the same stall (HTTP/1 over TLS was counted twice)
        if self.closed_noted.swap(true, Ordering::Relaxed) {
            return;
        }
        self.stats.note_closed(why);
        let client = self.peer.map(tracing::field::display);
        // a client can open connections to be closed at will: a budget, as for failures
        static BUDGET: LogBudget =
            LogBudget::info(PER_SECOND, "client connections closed by a limit");
        if BUDGET.admit() {
            tracing::info!(client, "{detail}");
        } else {
            tracing::debug!(client, "{detail}");
        }
    }

    /// A request was refused before the stack saw it (the stack's access log never sees
    /// these; nginx logs them as 400): counted, and logged at DEBUG with the client's
    /// address and `detail`, the exact reason when there is one (a flood of bad heads must
    /// not write a line each; the counter has them). Every refusal goes through here.
    #[cold]
    #[inline(never)]
    pub(crate) fn note_refused(&self, why: Refused, detail: Option<&dyn std::fmt::Display>) {
        self.stats.note_refused(why);
        let reason = match why {
            Refused::Malformed => "a request head that is not valid HTTP/1.1",
            Refused::TooLarge => "a request head or target over the size limits",
            Refused::Timeout => "a request head not complete in time",
            Refused::Framing => "a request whose framing is refused",
            Refused::Capacity => "an HTTP/2 stream with no place under the connection cap",
            Refused::Uploads => "an HTTP/2 upload past server.http2_max_uploads",
        };
        let client = self.peer.map(tracing::field::display);
        let detail = detail.map(tracing::field::display);
        tracing::debug!(client, reason, detail, "request refused before the stack");
    }

    /// Whether an HTTP/2 limit asked the connection to go away.
    pub(crate) fn closing(&self) -> bool {
        self.closing.get().is_some()
    }

    /// The server's counters.
    pub(crate) const fn stats(&self) -> &super::stats::ServerStats {
        &self.stats
    }

    /// The answers waiting on the client.
    pub(crate) const fn waiting(&self) -> &super::window::Waiting {
        &self.waiting
    }

    /// What the connection read against what it carried.
    pub(crate) const fn overhead(&self) -> &super::flood::Overhead {
        &self.overhead
    }

    /// Whether the connection's reads are held to [`limit_read`](Self::limit_read): over
    /// HTTP/2, and before its first request (an HTTP/1 request's body is not limited).
    #[inline]
    pub(super) fn limits_reads(&self) -> bool {
        self.h2.load(Ordering::Relaxed) || self.heads.load(Ordering::Relaxed) == 0
    }

    /// `n` more bytes were read: an error when they make the connection a flood of frames
    /// that carry nothing (`flood.rs`), or, over HTTP/2, when its client abandons its
    /// requests as a pace ([`abandoned_too_many`](Self::abandoned_too_many)). A connection
    /// that carries a tunnel (WebSocket over HTTP/2, whose bytes are no request's) is not
    /// held to it.
    ///
    /// Over HTTP/2 the first trip is no error: it asks the connection to go away
    /// ([`closing`](Self::closing); the server then sends a `GOAWAY` and lets the answers
    /// under way finish, so a client that tripped a limit by mistake, a heavy canceller,
    /// loses no request it can not retry), and an error comes only if the client goes on
    /// past [`GRACE_BYTES`] unpaid or [`GRACE_REQUESTS`]. Before a first request there is nothing
    /// to lose, and the connection is closed at once.
    #[cold]
    #[inline(never)]
    pub(super) fn limit_read(&self, n: usize) -> io::Result<()> {
        if self.upgraded.load(Ordering::Relaxed) {
            return Ok(());
        }
        let flood = self.overhead.read(n);
        let now = Tripped {
            unpaid: self.overhead.unpaid(),
            heads: self.heads.load(Ordering::Relaxed),
        };
        if let Some(tripped) = self.closing.get() {
            // going away: the client may finish what it has under way (an upload's bytes
            // are paid for), not start more nor go on flooding
            if now.unpaid.saturating_sub(tripped.unpaid) <= GRACE_BYTES
                && now.heads - tripped.heads <= GRACE_REQUESTS
            {
                return Ok(());
            }
            let client = self.peer.map(tracing::field::display);
            tracing::info!(client, "a client went on after its GOAWAY: connection cut");
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the client went on after it was asked to go away",
            ));
        }
        let h2 = self.h2.load(Ordering::Relaxed);
        let resets = h2 && self.abandoned_too_many();
        if !(flood || resets) {
            return Ok(());
        }
        let (why, what, error) = if flood {
            (
                Closed::Flood,
                "a client sent far more than its requests carried (frames that ask for nothing)",
                "the client's frames carried too little: a flood",
            )
        } else {
            (
                Closed::Resets,
                "a client reset half its HTTP/2 streams or more before their answers",
                "the client abandons its requests as a pace: a reset flood",
            )
        };
        if h2 {
            self.note_closed(
                why,
                &format!(
                    "{what}: GOAWAY sent; the connection closes once its answers under way are done, within {:?}",
                    super::going_away::GRACE
                ),
            );
            // one task reads: the first trip sets it
            let _ = self.closing.set(now);
            return Ok(());
        }
        self.note_closed(why, &format!("{what}: connection closed"));
        Err(io::Error::new(io::ErrorKind::InvalidData, error))
    }

    /// An answer is finished (sent, or dropped, or its request dropped before it had one).
    pub(crate) fn answer_finished(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// A claimed stream's member exchange is over: its answer read whole from the member (or
    /// failed), or the request ended first. Its place goes back.
    pub(super) fn exchange_over(&self) {
        self.stream_places.over();
    }

    /// A request's answer went out whole (those finished otherwise were abandoned by the
    /// client: reset or left before the answer, or part way through its body).
    pub(crate) fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused before the stack (400): it neither pays for frames
    /// ([`overhead`](Self::overhead)) nor counts among the requests abandoned ones are
    /// weighed against, so refused requests cannot pad either.
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the client abandoned so many of its requests before their answers that it
    /// is opening and resetting streams as a pace (an HTTP/2 "paced reset": each one
    /// reaches a member, and costs it the connection the request was on): at least
    /// [`ABANDONED`] of them, and at least half of all.
    pub(crate) fn abandoned_too_many(&self) -> bool {
        let abandoned = self.abandoned();
        let served = self
            .heads
            .load(Ordering::Relaxed)
            .saturating_sub(self.refused.load(Ordering::Relaxed));
        abandoned >= ABANDONED && abandoned * 2 >= served
    }

    /// Requests the client abandoned before their answers were over.
    fn abandoned(&self) -> u64 {
        // answered before finished: a request under way is neither yet
        let answered = self.answered.load(Ordering::Relaxed);
        self.finished
            .load(Ordering::Relaxed)
            .saturating_sub(answered)
    }

    /// A request's headers are complete.
    pub(crate) fn head_done<B: Body>(&self, req: &Request<B>) {
        self.read_since_head.store(0, Ordering::Relaxed);
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if req.version() == http::Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        // a body ends at once when the head said there is none (no length, or 0): the own
        // HTTP/1.1 path's requests, and hyper's without one
        let body = !req.body().is_end_stream();
        self.last_had_body.store(body, Ordering::Relaxed);
    }

    /// The connection speaks HTTP/2 (its preface, or TLS's ALPN, said so), whether or not
    /// it has sent a request yet.
    pub(super) fn speaks_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    /// An HTTP/2 connection with no request under way and no tunnel: nothing is lost by
    /// closing it.
    pub(super) fn idle_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.upgraded.load(Ordering::Relaxed)
    }

    /// The connection switched protocols.
    pub(crate) fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// Takes on the tunnel an answer switched to: an HTTP/2 stream's (`stream`: `Some` of its
    /// places under the connection caps) runs at once on the server's tasks, beside the
    /// connection; an HTTP/1.1 connection's is kept for [`Progress::run_tunnel`], once hyper
    /// has handed the connection over.
    pub(super) fn take_tunnel(
        &self,
        tunnel: TunnelFuture,
        stream: Option<super::place::MemberPlace>,
    ) {
        let tunnel = self.stats.open_tunnel(tunnel);
        if let Some(place) = stream {
            self.tasks.spawn_tunnel(tunnel, place);
        } else {
            *self
                .tunnel
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tunnel);
        }
    }

    /// An HTTP/2 stream's request goes out on a member connection of its own: holds a place
    /// under the connection caps for each such stream beside the first (see
    /// [`StreamPlaces`](super::place::StreamPlaces)); `Err` when the new one's is not to be
    /// had.
    pub(super) fn claim_stream(&self) -> Result<(), super::place::NoPlace> {
        self.stream_places.claim(|| self.member_place())
    }

    /// Places under the connection caps for an HTTP/2 stream's member connection (see
    /// [`member_place`](super::place::member_place)).
    pub(super) fn member_place(&self) -> Result<super::place::MemberPlace, super::place::NoPlace> {
        super::place::member_place(self.client.as_ref(), &self.tasks)
    }

    /// Behind a trusted proxy, the places a request's client takes while it is answered
    /// (see [`request_place`](super::place::request_place)).
    pub(super) fn request_place(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<crate::limits::Place>, ()> {
        match (&self.client, self.peer) {
            (Some(client), Some(peer)) => {
                super::place::request_place(Some(client), peer.ip(), headers)
            }
            _ => Ok(None),
        }
    }

    /// Runs the connection's tunnel to its end, if its last answer switched to one.
    pub(super) async fn run_tunnel(&self) {
        let tunnel = self
            .tunnel
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(tunnel) = tunnel {
            self.tasks.run_tunnel(tunnel).await;
        }
    }

    /// Whether a timeout now caught a request half-sent (rather than an idle keep-alive
    /// connection, which is closed silently). After a request with a body, the bytes read
    /// since its head may be that body, so only a first request or one after a bodiless
    /// request is answered.
    pub(super) fn caught_mid_head(&self) -> bool {
        self.read_since_head.load(Ordering::Relaxed) > 0
            && (self.heads.load(Ordering::Relaxed) == 0
                || !(self.last_had_body.load(Ordering::Relaxed) || self.h2.load(Ordering::Relaxed)))
    }

    /// Whether the socket ended the connection because its first request head was not
    /// complete in time (hyper's own timer had not fired, or never started).
    pub(crate) fn cut_mid_head(&self) -> bool {
        self.cut_mid_head.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_are_not_answered() {
        let p = Progress::default();
        assert!(!p.caught_mid_head());
        p.read_since_head.store(10, Ordering::Relaxed);
        assert!(p.caught_mid_head(), "a first request half-sent");
        let req = Request::post("/")
            .header("content-length", "5")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"hello",
            )))
            .unwrap();
        p.head_done(&req);
        p.read_since_head.store(5, Ordering::Relaxed);
        assert!(!p.caught_mid_head(), "the bytes may be the body");
        let req = Request::get("/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        p.head_done(&req);
        assert!(!p.caught_mid_head(), "idle after a GET");
        p.read_since_head.store(3, Ordering::Relaxed);
        assert!(p.caught_mid_head(), "a second request half-sent");
        // over HTTP/2, bytes after a head are frames of any stream, never a head's start
        let req = Request::get("/")
            .version(http::Version::HTTP_2)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        p.head_done(&req);
        p.read_since_head.store(9, Ordering::Relaxed);
        assert!(
            !p.caught_mid_head(),
            "an HTTP/2 connection between requests"
        );
        assert!(!p.cut_mid_head());
    }
}
