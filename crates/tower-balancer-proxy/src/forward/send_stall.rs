//! A limit on how long a member may take none of what is written to it: the request body
//! hyper's client streams to it, and the close of a connection whose exchange was given
//! up (nginx's `proxy_send_timeout`, timed between two writes).
//!
//! Why: hyper's client connection runs in a task of its own. When a member stops reading (a
//! hung process, one stopped with `SIGSTOP`, one that reads only after its own checks),
//! that task waits on the socket for ever: it no longer looks at the request body, so a
//! client that went away is not seen, and when the exchange is given up (a timeout, the
//! client gone) it still flushes what it holds before it closes. A hostile test left 80
//! member connections open, with their descriptors, 95 s after the clients of five HTTP/2
//! connections of 16 uploads each had gone, and two more after their `POST`s got 504: each
//! upload to a member that hangs kept one until the member came back or died. Here a write,
//! flush or close that makes no progress for the limit fails, and hyper closes the
//! connection.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::{Instant, Sleep};

/// How long a member may take none of what is written to it when none is set (nginx's
/// `proxy_send_timeout`).
pub const DEFAULT_MEMBER_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A member connection whose writes fail once one has waited `limit` with nothing taken.
#[derive(Debug)]
pub(super) struct SendStall<IO> {
    io: IO,
    limit: Duration,
    /// The deadline of the wait under way; made at the first wait, kept for the next.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a wait is under way (the timer's deadline is its).
    waiting: bool,
}

impl<IO> SendStall<IO> {
    /// `io`, its writes limited to `limit` without progress.
    pub(super) const fn new(io: IO, limit: Duration) -> Self {
        Self {
            io,
            limit,
            timer: None,
            waiting: false,
        }
    }

    /// What a write that returned `polled` means: progress ends the wait, and a wait past
    /// the limit is an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        // the clock is read once a wait, not on every poll of it
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !self.waiting {
            self.waiting = true;
            timer.as_mut().reset(Instant::now() + limit);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                Stalled(self.limit),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The member took nothing written to it for this long.
#[derive(Debug, thiserror::Error)]
#[error("the member took nothing written to it for {0:?} (balancer.send_timeout)")]
pub(super) struct Stalled(Duration);

impl<IO: Read + Unpin> Read for SendStall<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: Write + Unpin> Write for SendStall<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt as _;

    /// What a write of `bytes` to a peer that reads nothing comes to, by the paused clock.
    async fn write_to_deaf_peer(bytes: usize, limit: Duration) -> (io::Result<()>, Duration) {
        let (ours, _peer) = tokio::io::duplex(1024);
        let mut io = TokioIo::new(SendStall::new(TokioIo::new(ours), limit));
        let start = Instant::now();
        let written = io.write_all(&vec![b'x'; bytes]).await;
        (written, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_takes_nothing_of_fails_at_the_limit() {
        let (written, after) = write_to_deaf_peer(4096, Duration::from_secs(60)).await;
        let e = written.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("balancer.send_timeout"), "{e}");
        assert_eq!(after, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn what_fits_is_written_without_a_wait() {
        let (written, after) = write_to_deaf_peer(1024, Duration::from_secs(60)).await;
        written.unwrap();
        assert_eq!(after, Duration::ZERO);
    }

    /// Each write that makes progress starts the wait afresh: a peer that reads a little
    /// every 40 s is never cut at 60 s, however long the whole write takes.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_taking_is_not_cut() {
        use tokio::io::AsyncReadExt as _;
        let (ours, mut peer) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut got = 0;
            while got < 8192 {
                tokio::time::sleep(Duration::from_secs(40)).await;
                got += peer.read(&mut buf).await.unwrap();
            }
            got
        });
        let mut io = TokioIo::new(SendStall::new(TokioIo::new(ours), Duration::from_secs(60)));
        let start = Instant::now();
        io.write_all(&[b'x'; 8192]).await.unwrap();
        assert!(start.elapsed() > Duration::from_secs(60 * 5));
        drop(io);
        assert_eq!(reader.await.unwrap(), 8192);
    }
}
