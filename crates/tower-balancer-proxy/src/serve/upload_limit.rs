//! How many requests on one HTTP/2 connection may stream their bodies to members at once.
//!
//! Why a limit: a request whose body is still coming holds a member connection (and a place
//! under the connection cap) for as long as its client takes to send it, which the client
//! sets. Five HTTP/2 connections of 200 streams, each sending a byte every 2 s, held 1,030
//! descriptors, and every other client got 503 once the cap was full. An HTTP/1.1 client
//! holds one member connection a connection; over HTTP/2, at most
//! [`UploadLimit::max`] at once stream to members.
//!
//! Why not refuse at once past it: a burst of small `POST`s arrives with its bodies, but
//! hyper hands each request over at its head, before its body is read; refusing them all
//! failed 53% of 20,000 512-byte `POST`s sent 64 at a time on 4 connections. A request past
//! the limit is therefore read whole first (nginx's request buffering, for these alone):
//! if its body ends within the connection's [`PER_CONNECTION`] and the front's [`PER_FRONT`]
//! of such bodies, and within the header-read timeout (as its head had to), it goes to its
//! member whole, holding nothing while its client sends. Otherwise it streams in an upload
//! slot if one has come free meanwhile, what was read of it first; with none free it is
//! reset with `REFUSED_STREAM` before any of it reached a member, which tells its client it
//! may send it again (RFC 9113 §8.7; browsers and curl do so on their own). Refused at
//! once, a client sending each again at once found the same slots full: h2load lost 98%
//! of a burst of 1 MiB bodies. Without the front's budget, 150 connections each reading 1 MiB ahead took 330 MB.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::client_body::ClientBody;
use super::stats::Refused;
use super::timeout::Progress;
use tower_balancer::log_budget::LogBudget;

/// The most body bytes read ahead on one connection at once, across its requests past the
/// limit: 64 bodies of 64 KiB. A burst of 64 `POST`s of 50 KiB lost a quarter of them at
/// 1 MiB; of 70 KiB, 93% with a cap of 64 KiB a body (their clients sent them again at
/// once, into the same full slots).
pub(super) const PER_CONNECTION: u64 = 4 * 1024 * 1024;

/// The most body bytes read ahead at once by all connections of a front together.
pub(super) const PER_FRONT: u64 = 64 * 1024 * 1024;

/// A connection's limit on its uploads.
#[derive(Debug, Clone, Default)]
pub(crate) struct UploadLimit {
    /// Requests streaming their bodies to members at once (`server.http2_max_uploads`); 0
    /// for no limit.
    pub(crate) max: u32,
    /// How long the body of a request past it may take to arrive whole.
    pub(crate) within: Duration,
    /// The bytes read ahead by every connection of the front ([`PER_FRONT`]).
    pub(crate) front: Arc<AtomicU64>,
}

/// A connection's uploads: its limit, the slots taken, and the bytes read ahead.
#[derive(Debug, Default)]
pub(crate) struct Uploads {
    limit: UploadLimit,
    /// Requests streaming their bodies to members.
    streaming: AtomicU32,
    /// Body bytes read ahead for requests past the limit.
    read_ahead: AtomicU64,
}

impl Uploads {
    /// A connection's, under `limit`.
    pub(crate) fn new(limit: UploadLimit) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// An HTTP/2 request whose body is still coming takes one of the connection's upload
    /// slots, to stream its body to a member, until the body ends (or is dropped,
    /// [`Uploads::end`]): `false` when all are taken, and the body is read whole first.
    pub(crate) fn start(&self) -> bool {
        let max = self.limit.max;
        self.streaming
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A body [`Uploads::start`] admitted ended: its slot is free.
    pub(crate) fn end(&self) {
        self.streaming.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a body past the limit was not read whole.
enum NotWhole {
    /// Longer than the limits allow, or not whole in time, and no upload slot came free
    /// meanwhile: the stream is refused.
    Refused,
    /// The client reset the stream, or its connection failed: nobody is refused.
    ClientGone,
}

/// Calls `svc` with `req`, or over HTTP/2 (`h2`: its connection's progress) with a body to
/// come and every upload slot of its connection taken, returns it to be read whole first.
pub(super) fn call<S>(
    svc: &S,
    req: Request<Incoming>,
    h2: Option<&Arc<Progress>>,
) -> Result<S::Future, Box<Past<S>>>
where
    S: hyper::service::Service<Request<ClientBody>> + Clone,
{
    match h2 {
        // its body's bytes are the connection's payload (`flood.rs`); it streams to its
        // member in one of the connection's upload slots until the body ends
        Some(progress) if !req.body().is_end_stream() => {
            if progress.uploads().start() {
                Ok(svc.call(req.map(|b| ClientBody::counted(b, progress.clone()))))
            } else {
                // boxed: the common answer does not carry its size
                Err(Box::new(Past {
                    svc: svc.clone(),
                    req,
                    progress: progress.clone(),
                }))
            }
        }
        _ => Ok(svc.call(req.map(ClientBody::hyper))),
    }
}

/// A request past its connection's upload limit, with the service to call once its body
/// is read whole.
pub(super) struct Past<S> {
    svc: S,
    req: Request<Incoming>,
    progress: Arc<Progress>,
}

impl<S: hyper::service::Service<Request<ClientBody>>> Past<S> {
    /// Reads the body whole and calls the service, or refuses the stream: hyper resets it
    /// with the reason of the error's `h2::Error`, refused unprocessed, for the client to
    /// send again.
    pub(super) async fn call(self: Box<Self>) -> Result<S::Future, h2::Error> {
        let Self { svc, req, progress } = *self;
        match read_whole(req, &progress).await {
            Ok(req) => Ok(svc.call(req)),
            Err(NotWhole::Refused) => {
                uploads_refused(&progress);
                Err(h2::Error::from(h2::Reason::REFUSED_STREAM))
            }
            // a cancel of a stream already gone: neither counted nor said
            Err(NotWhole::ClientGone) => Err(h2::Error::from(h2::Reason::CANCEL)),
        }
    }
}

/// A request's body did not arrive whole within the limits: counted, and said once a
/// second at most (a client can send these at will).
#[cold]
#[inline(never)]
fn uploads_refused(progress: &Progress) {
    static BUDGET: LogBudget = LogBudget::warn(1, "HTTP/2 uploads refused");
    progress.note_refused(Refused::Uploads, None);
    if BUDGET.admit() {
        tracing::warn!(
            client = progress.peer.map(tracing::field::display),
            "HTTP/2 uploads past server.http2_max_uploads on one connection, whose bodies \
             were not whole within 4 MiB a connection (64 MiB all together) and the \
             header-read timeout while no upload ended, are refused (REFUSED_STREAM): each would hold \
             a member connection while its client sends"
        );
    }
}

/// Reads the body of `req`, past its connection's upload limit, whole: the request with its
/// body in memory. When it says it is longer than [`PER_CONNECTION`], the connection or the
/// front has read all it may ahead, or it did not end within `progress`'s limit, it streams
/// in an upload slot freed meanwhile, with what was read of it first; with none free, it is
/// refused.
async fn read_whole(
    req: Request<Incoming>,
    progress: &Arc<Progress>,
) -> Result<Request<ClientBody>, NotWhole> {
    let (head, mut body) = req.into_parts();
    // a length that cannot fit is decided at once, not at the timeout
    if body.size_hint().lower() > PER_CONNECTION {
        return streamed(head, BytesMut::new(), body, progress);
    }
    // while it is read the connection has a request under way: neither the keep-alive
    // limit nor a stop takes it for idle
    let _reading = Reading::new(progress);
    let mut held = Held {
        progress: progress.clone(),
        bytes: 0,
    };
    let mut data = BytesMut::new();
    let deadline = tokio::time::Instant::now() + progress.uploads().limit.within;
    let trailers = loop {
        let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await else {
            return streamed(head, data, body, progress);
        };
        let Some(frame) = frame else { break None };
        let frame = match frame.map_err(|_| NotWhole::ClientGone)?.into_data() {
            Ok(chunk) => chunk,
            Err(frame) => break frame.into_trailers().ok(),
        };
        progress.overhead().body(frame.len());
        let n = frame.len() as u64;
        data.extend_from_slice(&frame);
        if !held.take(n) {
            return streamed(head, data, body, progress);
        }
    };
    let body = ClientBody::buffered(data.freeze(), trailers, held);
    Ok(Request::from_parts(head, body))
}

/// A request whose body cannot be read whole streams in an upload slot if one is free now
/// (an upload ended since it came), `read` first; otherwise it is refused.
fn streamed(
    head: http::request::Parts,
    read: BytesMut,
    rest: Incoming,
    progress: &Arc<Progress>,
) -> Result<Request<ClientBody>, NotWhole> {
    if !progress.uploads().start() {
        return Err(NotWhole::Refused);
    }
    let body = ClientBody::counted_after(read.freeze(), rest, progress.clone());
    Ok(Request::from_parts(head, body))
}

/// A request read whole counts as under way on its connection until it is handed on (the
/// stack's own count then takes over).
struct Reading<'a>(&'a Progress);

impl<'a> Reading<'a> {
    fn new(progress: &'a Progress) -> Self {
        progress.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(progress)
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes read ahead on a connection, given back when dropped (with the body holding them).
#[derive(Debug)]
pub(super) struct Held {
    progress: Arc<Progress>,
    bytes: u64,
}

impl Held {
    /// Takes `n` more bytes of the connection's [`PER_CONNECTION`] and the front's
    /// [`PER_FRONT`]: `false` when they are not there.
    fn take(&mut self, n: u64) -> bool {
        let uploads = self.progress.uploads();
        let connection = &uploads.read_ahead;
        if !take(connection, n, PER_CONNECTION) {
            return false;
        }
        if !take(&uploads.limit.front, n, PER_FRONT) {
            connection.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        self.bytes += n;
        true
    }
}

/// Adds `n` to `held` if that stays within `most`.
fn take(held: &AtomicU64, n: u64, most: u64) -> bool {
    held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
        (h + n <= most).then_some(h + n)
    })
    .is_ok()
}

impl Drop for Held {
    fn drop(&mut self) {
        let uploads = self.progress.uploads();
        uploads.read_ahead.fetch_sub(self.bytes, Ordering::Relaxed);
        uploads.limit.front.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A body read whole: its bytes, once, then its trailers.
#[derive(Debug)]
pub(super) struct Whole {
    pub(super) data: Option<Bytes>,
    pub(super) trailers: Option<http::HeaderMap>,
    pub(super) _held: Held,
}
