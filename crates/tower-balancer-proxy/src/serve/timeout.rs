//! Connection timeouts hyper does not have: `408 Request Timeout` for clients that start a
//! request and never finish its headers, and closing connections that send nothing.
//!
//! Why: hyper's header-read timeout closes a half-sent request without a word, and a client
//! (or the operator reading its logs) cannot tell a slow network from a cut; Apache's
//! `mod_reqtimeout` answers 408, and so do we. And hyper's timer only starts once hyper-util
//! has told HTTP/1 from HTTP/2, so a client that connects and sends nothing, or only the
//! start of the HTTP/2 preface, held its connection forever (the zero-byte slowloris), and
//! HTTP/2 has no head timer at all; here a connection whose first request head is not
//! complete within the header-read timeout of its start is closed, and an idle keep-alive
//! connection (HTTP/1, or HTTP/2 with no stream open) after the keep-alive timeout, unless
//! a request on it is still being answered or it was upgraded (WebSocket). Answers the
//! client does not take are cut at the send timeout: writes that make no progress, and over
//! HTTP/2 answers waiting on a window the client never opens (`window.rs`). hyper owns the connection while it
//! serves it, so the socket is shared through a mutex (never contended: one task polls it)
//! and taken back for the 408 when hyper gives up.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower_balancer::deadline::deadline;

use super::progress::Closed;
pub(crate) use super::progress::Progress;

/// How long a connection may send nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleLimits {
    /// Before its first request.
    pub(crate) first: Duration,
    /// Between requests.
    pub(crate) keep_alive: Duration,
    /// While a response waits for the client to read it (nginx `send_timeout`).
    pub(crate) send: Duration,
}

#[derive(Debug)]
struct IoState<IO> {
    io: IO,
    /// When the connection was handed to the server (after TLS).
    started: Instant,
    last_activity: Instant,
    /// [`Progress::finished`] when the idle limit last looked.
    seen_finished: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    /// While writes make no progress (the client is not reading): since when, and
    /// [`Progress::sent`] then (the stall began, or the socket under TLS last sent), and the
    /// timer that ends it.
    stalled: Option<(Instant, u64, Pin<Box<Sleep>>)>,
    /// Over HTTP/2, the timer that looks at the answers waiting on the client's window.
    window_check: Option<Pin<Box<Sleep>>>,
}

/// A connection's socket, shared so it can be written to after hyper lets go of it.
#[derive(Debug)]
pub(crate) struct Watched<IO> {
    io: Arc<Mutex<IoState<IO>>>,
    progress: Arc<Progress>,
    limits: IdleLimits,
    /// `IO` is TLS over a socket counting what it sends ([`Progress::sent`]).
    over_tls: bool,
}

impl<IO> Clone for Watched<IO> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
            progress: self.progress.clone(),
            limits: self.limits,
            over_tls: self.over_tls,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Watched<IO> {
    pub(crate) fn new(io: IO, progress: Arc<Progress>, limits: IdleLimits) -> Self {
        Self {
            io: Arc::new(Mutex::new(IoState {
                io,
                started: Instant::now(),
                last_activity: Instant::now(),
                seen_finished: 0,
                sleep: None,
                stalled: None,
                window_check: None,
            })),
            progress,
            limits,
            over_tls: false,
        }
    }

    /// `IO` is TLS over a socket that adds what it sends to [`Progress::sent`]
    /// (`under_tls.rs`): writes that rustls takes are not progress until the socket sends.
    pub(crate) fn over_tls(mut self) -> Self {
        self.over_tls = true;
        self
    }

    /// When bytes last went either way (or the connection started).
    pub(crate) fn last_activity(&self) -> Instant {
        self.lock().last_activity
    }

    /// The connection's progress.
    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The connection's progress, shared.
    pub(crate) fn progress_handle(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    fn lock(&self) -> MutexGuard<'_, IoState<IO>> {
        self.io.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the connection is idle and the idle limit has passed: polls a timer that
    /// wakes the reader when it does.
    ///
    /// The timer is armed once and moved lazily: a busy connection leaves it where it is
    /// (a wake-up from it is ignored), and when it fires early because there was activity
    /// since, it is moved to the real deadline then. Re-arming it on every request cost a
    /// timer-wheel registration and an allocation per request.
    fn idle_expired(&self, inner: &mut IoState<IO>, cx: &mut Context<'_>) -> bool {
        let p = &self.progress;
        if p.in_flight.load(Ordering::Relaxed) > 0 || p.upgraded.load(Ordering::Relaxed) {
            // answering or tunnelling
            return false;
        }
        let first = p.heads.load(Ordering::Relaxed) == 0;
        let deadline = if first {
            // no request head yet: the header-read limit from the connection's start,
            // whatever was sent. hyper's own timer starts only once hyper-util has told
            // HTTP/1 from HTTP/2, which a client that sends the start of the HTTP/2
            // preface and stops never lets it do, and HTTP/2 has no head timer at all
            deadline(inner.started, self.limits.first)
        } else if p.caught_mid_head() {
            // an HTTP/1 head under way: hyper's header timer is running
            return false;
        } else {
            if p.h2.load(Ordering::Relaxed) {
                // an answer finished since the last look is activity: over HTTP/2 its frames
                // go out after this read, so a long answer must not find the limit passed
                // and the connection closed under it (HTTP/1 marks its writes)
                let finished = p.finished.load(Ordering::Relaxed);
                if finished != inner.seen_finished {
                    inner.seen_finished = finished;
                    inner.last_activity = Instant::now();
                }
            }
            // HTTP/1: the next head's header-read limit runs while the connection idles too
            // (hyper's header timer starts when it waits for a head), so the shorter one
            // ends an idle connection
            let limit = if p.h2.load(Ordering::Relaxed) {
                self.limits.keep_alive
            } else {
                self.limits.keep_alive.min(self.limits.first)
            };
            deadline(inner.last_activity, limit)
        };
        let sleep = inner
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            // a shorter limit than the one armed: the armed deadline must never be later
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if Instant::now() < deadline {
            // fired at an older deadline; the connection was active since
            sleep.as_mut().reset(deadline);
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
        if first && p.read_since_head.load(Ordering::Relaxed) > 0 {
            p.cut_mid_head.store(true, Ordering::Relaxed);
        }
        true
    }

    /// Over HTTP/2, whether an answer has waited on the client's flow-control window for
    /// the send limit with none of its bytes sent (see `window.rs`): since when it waited;
    /// polls a timer that wakes the reader then.
    ///
    /// While answers are under way the timer is never later than the send limit from when
    /// it was armed, so an answer that starts waiting after (in its own task, which cannot
    /// wake this one) is looked at within the limit of its start. When it fires, answers
    /// whose bytes went out since wait from now, and it is moved to the oldest one's
    /// deadline, or a limit on: an answer is cut between one and two limits after its
    /// last byte went out, never sooner.
    fn window_expired(&self, inner: &mut IoState<IO>, cx: &mut Context<'_>) -> Option<Instant> {
        let p = &self.progress;
        if !p.h2.load(Ordering::Relaxed) || p.in_flight.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let limit = self.limits.send;
        let oldest = p.waiting.oldest();
        let timer = inner.window_check.get_or_insert_with(|| {
            let from = oldest.unwrap_or_else(Instant::now);
            Box::pin(tokio::time::sleep_until(deadline(from, limit)))
        });
        if let Some(since) = oldest {
            let at = deadline(since, limit);
            if timer.deadline() > at {
                timer.as_mut().reset(at);
            }
        }
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let now = Instant::now();
        let oldest = p.waiting.refresh(now);
        if let Some(since) = oldest.filter(|&since| now >= deadline(since, limit)) {
            return Some(since);
        }
        timer.as_mut().reset(deadline(oldest.unwrap_or(now), limit));
        let _ = timer.as_mut().poll(cx);
        None
    }

    /// After hyper's header-read timeout: answers 408 and closes, if a request was caught
    /// half-sent; within `limit`, best effort.
    pub(crate) async fn answer_timeout(self, limit: Duration) {
        if !self.progress.caught_mid_head() {
            return;
        }
        self.progress
            .note_refused(super::stats::Refused::Timeout, None);
        let answer = async {
            let mut io = WriteHalf(self);
            io.write_all(
                b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            )
            .await?;
            io.shutdown().await
        };
        let _ = tokio::time::timeout(limit, answer).await;
    }
}

/// Writes through a [`Watched`] socket outside hyper.
struct WriteHalf<IO>(Watched<IO>);

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WriteHalf<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.0.lock();
        Pin::new(&mut inner.io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.0.lock();
        Pin::new(&mut inner.io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.0.lock();
        Pin::new(&mut inner.io).poll_shutdown(cx)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let mut inner = self.lock();
        match Pin::new(&mut inner.io).poll_read(cx, buf) {
            Poll::Ready(res) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    inner.last_activity = Instant::now();
                    self.progress
                        .read_since_head
                        .fetch_add(n as u64, Ordering::Relaxed);
                    // over HTTP/2 and before a first request: kept out of line, so the
                    // common read (HTTP/1 after its first request) pays two loads
                    if self.progress.limits_reads() {
                        self.progress.limit_read(n)?;
                    }
                }
                Poll::Ready(res)
            }
            Poll::Pending => {
                if self.idle_expired(&mut inner, cx) {
                    // idle too long: an end of stream, and hyper closes the connection
                    return Poll::Ready(Ok(()));
                }
                if let Some(waited) = self.window_expired(&mut inner, cx) {
                    // the client stopped reading first: a write or flush has waited, with
                    // nothing sent, since before the answer began to wait on the window (over
                    // TLS a stall the socket has since moved past is not one); a client that
                    // starved a window and stopped reading only later is cut for its window
                    let sent = self.progress.sent.load(Ordering::Relaxed);
                    let stalled = inner
                        .stalled
                        .as_ref()
                        .is_some_and(|(since, at, _)| *at == sent && *since <= waited);
                    return Poll::Ready(Err(window_cut(&self.progress, stalled, self.limits.send)));
                }
                Poll::Pending
            }
        }
    }
}

/// The error that closes a connection whose answer waited the send limit (`limit`) on the
/// client: on its flow-control window, or behind writes the client does not read (`stalled`).
#[cold]
#[inline(never)]
fn window_cut(progress: &Progress, stalled: bool, limit: Duration) -> io::Error {
    if stalled {
        // the socket takes nothing either: the client is not reading at all, and its
        // answers wait behind that, not on a window
        not_read(progress, limit)
    } else {
        progress.note_closed(
            Closed::Window,
            &format!("an HTTP/2 answer waited on the client's flow-control window past the send timeout ({limit:?}): connection closed"),
        );
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client gave an answer no window within the send timeout",
        )
    }
}

/// The error that closes a connection whose client read nothing of what was written to it
/// within the send limit (`limit`).
#[cold]
#[inline(never)]
fn not_read(progress: &Progress, limit: Duration) -> io::Error {
    progress.note_closed(
        Closed::SendTimeout,
        &format!("a write to the client made no progress within the send timeout ({limit:?}): connection closed"),
    );
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client read nothing of its response within the send timeout",
    )
}

impl<IO> Watched<IO> {
    /// After a write: progress ends a stall; no progress starts one, and a stall longer
    /// than the send limit fails the write, so hyper closes the connection (and the member's
    /// exchange with it) instead of waiting for a client that never reads.
    fn after_write(
        &self,
        inner: &mut IoState<IO>,
        cx: &mut Context<'_>,
        res: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match res {
            Poll::Ready(Ok(n)) if n > 0 => {
                inner.last_activity = Instant::now();
                // over TLS rustls takes up to 64 KiB that the client may never read: the
                // stall ends when the socket under it sends (`stall`), not here
                if !self.over_tls {
                    inner.stalled = None;
                }
                res
            }
            Poll::Pending => match self.stall(inner, cx) {
                Some(cut) => Poll::Ready(Err(cut)),
                None => Poll::Pending,
            },
            res => res,
        }
    }

    /// A write, flush or shutdown waits on the client: starts the stall's timer, or moves it
    /// on if the socket under TLS sent something since; the error that closes the
    /// connection once the stall has lasted the send limit. An upgraded connection
    /// (WebSocket) is left to its own peers.
    fn stall(&self, inner: &mut IoState<IO>, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.progress.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        let limit = self.limits.send;
        let sent = self.progress.sent.load(Ordering::Relaxed);
        let (since, at, timer) = inner.stalled.get_or_insert_with(|| {
            let now = Instant::now();
            (
                now,
                sent,
                Box::pin(tokio::time::sleep_until(deadline(now, limit))),
            )
        });
        if *at != sent {
            // what rustls had taken is reaching the client: the stall starts over
            *since = Instant::now();
            *at = sent;
            timer.as_mut().reset(deadline(*since, limit));
        }
        timer
            .as_mut()
            .poll(cx)
            .is_ready()
            .then(|| not_read(&self.progress, limit))
    }

    /// A flush or shutdown that waits: over TLS, on rustls writing what it took to a
    /// client that may not be reading (on a plain socket neither waits).
    fn after_flush(
        &self,
        inner: &mut IoState<IO>,
        cx: &mut Context<'_>,
        res: Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        if res.is_pending() {
            if let Some(cut) = self.stall(inner, cx) {
                return Poll::Ready(Err(cut));
            }
        }
        res
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.lock();
        let res = Pin::new(&mut inner.io).poll_write(cx, buf);
        self.after_write(&mut inner, cx, res)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.lock();
        let res = Pin::new(&mut inner.io).poll_write_vectored(cx, bufs);
        self.after_write(&mut inner, cx, res)
    }
    fn is_write_vectored(&self) -> bool {
        self.lock().io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        let res = Pin::new(&mut inner.io).poll_flush(cx);
        self.after_flush(&mut inner, cx, res)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        let res = Pin::new(&mut inner.io).poll_shutdown(cx);
        self.after_flush(&mut inner, cx, res)
    }
}

/// Whether a connection ended because hyper's header-read timeout fired.
pub(crate) fn is_header_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    tower_balancer::error::sources(e)
        .filter_map(|err| err.downcast_ref::<hyper::Error>())
        .any(hyper::Error::is_timeout)
}
