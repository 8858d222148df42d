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
//! if its body ends within [`PER_STREAM`] bytes, within the connection's [`PER_CONNECTION`]
//! of such bodies, and within the header-read timeout (as its head had to), it goes to its
//! member whole, holding nothing while its client sends. Otherwise it is reset with
//! `REFUSED_STREAM` before any of it reached a member, which tells its client it may send
//! it again (RFC 9113 §8.7; browsers do so on their own).

use std::sync::atomic::Ordering;
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

/// The most body bytes read ahead for one request past the limit.
pub(super) const PER_STREAM: u64 = 64 * 1024;

/// The most body bytes read ahead on one connection at once, across its requests past the
/// limit: as much as hyper's own connection window lets a client send unread.
pub(super) const PER_CONNECTION: u64 = 1024 * 1024;

/// A connection's limit on its uploads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UploadLimit {
    /// Requests streaming their bodies to members at once (`server.http2_max_uploads`); 0
    /// for no limit.
    pub(crate) max: u32,
    /// How long the body of a request past it may take to arrive whole.
    pub(crate) within: Duration,
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
            if progress.start_upload() {
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
            Some(req) => Ok(svc.call(req)),
            None => {
                uploads_refused(&progress);
                Err(h2::Error::from(h2::Reason::REFUSED_STREAM))
            }
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
             were not whole within 64 KiB and the header-read timeout, are refused \
             (REFUSED_STREAM): each would hold a member connection while its client sends"
        );
    }
}

/// Reads the body of `req`, past its connection's upload limit, whole: the request with its
/// body in memory, or `None` when it is longer than [`PER_STREAM`], the connection has read
/// [`PER_CONNECTION`] ahead already, it did not end within `progress`'s limit, or it
/// failed (the stream is then refused).
async fn read_whole(
    req: Request<Incoming>,
    progress: &Arc<Progress>,
) -> Option<Request<ClientBody>> {
    // while it is read the connection has a request under way: neither the keep-alive
    // limit nor a stop takes it for idle
    let _reading = Reading::new(progress);
    let (head, mut body) = req.into_parts();
    let within = progress.upload_limit().within;
    let mut held = Held {
        progress: progress.clone(),
        bytes: 0,
    };
    let mut data = BytesMut::new();
    let deadline = tokio::time::Instant::now() + within;
    let trailers = loop {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await.ok()?;
        let Some(frame) = frame else { break None };
        let frame = match frame.ok()?.into_data() {
            Ok(chunk) => chunk,
            Err(frame) => break frame.into_trailers().ok(),
        };
        progress.overhead().body(frame.len());
        let n = frame.len() as u64;
        if held.bytes + n > PER_STREAM || !held.take(n) {
            return None;
        }
        data.extend_from_slice(&frame);
    };
    let body = ClientBody::buffered(data.freeze(), trailers, held);
    Some(Request::from_parts(head, body))
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
    /// Takes `n` more bytes of the connection's [`PER_CONNECTION`]: `false` when they are
    /// not there.
    fn take(&mut self, n: u64) -> bool {
        let taken = progress_held(&self.progress)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + n <= PER_CONNECTION).then_some(held + n)
            })
            .is_ok();
        if taken {
            self.bytes += n;
        }
        taken
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        progress_held(&self.progress).fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The bytes `progress`'s connection has read ahead.
fn progress_held(progress: &Progress) -> &std::sync::atomic::AtomicU64 {
    &progress.read_ahead_bytes
}

/// A body read whole: its bytes, once, then its trailers.
#[derive(Debug)]
pub(super) struct Whole {
    pub(super) data: Option<Bytes>,
    pub(super) trailers: Option<http::HeaderMap>,
    pub(super) _held: Held,
}
