//! The server's own HTTP/1.1 path for the common request, in front of hyper's.
//!
//! Why: hyper's server is general (every framing, HTTP/1.0, upgrades, informational answers,
//! its own buffers and dispatch), and that generality was most of what a proxied `GET` cost
//! above nginx (`scripts/instructions-check.sh`). Here a connection's requests are read with
//! httparse into a request that shares the read buffer, the stack is called, and the answer
//! is written by hand. At the first request this path does not serve itself (see
//! [`head`]'s rules), the connection goes to hyper for good, with what was read put back in
//! front ([`rewind`]), so every framing and smuggling rule hyper keeps still holds.

mod date;
mod head;
mod rewind;
mod write;

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tower_balancer::deadline::deadline;
use tower_balancer::task_timer::{sleep_until, TaskSleep};
use tower_balancer::BoxError;

pub(crate) use rewind::Rewind;

use super::client_body::ClientBody;
use super::timeout::Watched;
use head::Head;

/// What the own path holds a client's request heads to (hyper's settings, which the
/// requests it hands over keep).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    /// A head's bytes at most.
    pub(crate) bytes: usize,
    /// Its fields at most.
    pub(crate) fields: usize,
    /// How long a head may take once its first bytes are in.
    pub(crate) time: Duration,
}

/// How a connection left the own path.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It is over (the client closed, asked to, timed out, or the server is stopping).
    Closed,
    /// A request hyper must read: the bytes read so far, from that request's first byte.
    HandOver(BytesMut),
}

/// What reading the next head gave.
// returned once a request and taken apart at once: a box would be an allocation a request
#[allow(clippy::large_enum_variant)]
enum Read {
    Own(Request<ClientBody>, bool),
    HandOver,
    /// The client closed, the connection's idle limit passed, or the server is stopping.
    Closed,
    /// A head under way took too long.
    TimedOut,
}

/// Serves `io`'s requests with `svc` until the connection ends or a request is for hyper.
/// `stop` changes when the server stops: an idle connection closes then, and a busy one
/// after its answer.
pub(crate) async fn serve<IO, S, B>(
    io: &mut Watched<IO>,
    svc: &mut S,
    limits: HeadLimits,
    stop: &watch::Receiver<()>,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: hyper::service::Service<Request<ClientBody>, Response = Response<B>, Error = Infallible>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut scratch = head::Scratch::default();
    let mut out = Vec::with_capacity(1024);
    let mut waiter = stop.clone();
    let mut stopped = pin!(async move {
        let _ = waiter.changed().await;
    });
    let mut served = false;
    loop {
        let (req, close) =
            match read_head(io, &mut buf, &mut scratch, limits, stopped.as_mut()).await {
                Read::Own(req, close) => (req, close),
                // HTTP/2's preface is a connection's first bytes or a bad request (RFC 9113
                // §3.4); hyper's server would take it for HTTP/2 wherever it comes
                Read::HandOver if served && buf.starts_with(b"PRI * HTTP/2") => {
                    let refused =
                    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
                    let close = async {
                        io.write_all(refused).await?;
                        io.shutdown().await
                    };
                    let _ = tokio::time::timeout(super::connection::ANSWER_LIMIT, close).await;
                    return Ended::Closed;
                }
                Read::HandOver => return Ended::HandOver(buf),
                Read::Closed if !io.progress().cut_mid_head() => return Ended::Closed,
                // a first head the socket's limit cut, or a later one past its own: 408
                Read::Closed | Read::TimedOut => {
                    io.clone()
                        .answer_timeout(super::connection::ANSWER_LIMIT)
                        .await;
                    return Ended::Closed;
                }
            };
        served = true;
        let head = req.method() == Method::HEAD;
        let call = pin!(svc.call(req));
        let Some(Ok(res)) = answer_or_gone(io, &mut buf, call).await else {
            // the client hung up: its request is dropped (and leaves a member's queue)
            return Ended::Closed;
        };
        let keep = !close && !stop.has_changed().unwrap_or(true);
        let (parts, body) = res.into_parts();
        let body = pin!(body);
        match write::respond(io, &mut out, &parts, body, head, keep).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = tokio::time::timeout(super::connection::ANSWER_LIMIT, io.shutdown()).await;
                return Ended::Closed;
            }
        }
    }
}

/// The stack's answer, or `None` when the client closes the connection first. While
/// nothing of a next request is in, the socket is read meanwhile, as hyper does: a client
/// that hangs up is noticed (its request is not worked on for no one). Once bytes of a next
/// request are in (pipelined), the socket is left alone until it is read, so a client that
/// sent its requests and then closed its side still gets the answers to those read ahead.
async fn answer_or_gone<IO, F>(
    io: &mut Watched<IO>,
    buf: &mut BytesMut,
    mut call: Pin<&mut F>,
) -> Option<F::Output>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    F: Future,
{
    while buf.is_empty() {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8 * 1024);
        }
        tokio::select! {
            biased;
            res = call.as_mut() => return Some(res),
            read = io.read_buf(buf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return None;
                }
            }
        }
    }
    Some(call.await)
}

/// Reads until `buf` starts with a whole head. A head under way has `limits.time` from the
/// answer before it (or the connection's start), as hyper counts it, and gets its 408 then;
/// an idle connection is closed by the socket's own limit (`Watched`: the shorter of the
/// keep-alive and header-read timeouts). `stopped` ends the wait at once.
async fn read_head<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Watched<IO>,
    buf: &mut BytesMut,
    scratch: &mut head::Scratch,
    limits: HeadLimits,
    mut stopped: Pin<&mut impl Future<Output = ()>>,
) -> Read {
    let since = io.last_activity();
    // armed only once a head is under way: most heads come whole in one read
    let mut late: Option<TaskSleep> = None;
    loop {
        if !buf.is_empty() {
            match head::parse(buf, limits, scratch) {
                Head::Own { req, close } => return Read::Own(req, close),
                Head::HandOver => return Read::HandOver,
                // hyper refuses it with 431
                Head::Partial if buf.len() >= limits.bytes => return Read::HandOver,
                Head::Partial => {
                    late.get_or_insert_with(|| sleep_until(deadline(since, limits.time)));
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8 * 1024);
        }
        let read = tokio::select! {
            biased;
            read = io.read_buf(buf) => read,
            () = stopped.as_mut() => return Read::Closed,
            () = until(&mut late) => return Read::TimedOut,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return Read::Closed;
        }
    }
}

/// Ends when `sleep` does; never without one.
async fn until(sleep: &mut Option<TaskSleep>) {
    match sleep {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}
