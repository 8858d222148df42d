//! A member connection of the own path: plain TCP, whose request heads are written by the
//! runtime's [`flush`](super::flush) task, or TLS, written by the request's task.
//!
//! Why plain connections are shared with a writer: a request's task that writes its head
//! the moment the head is ready wakes the member for each request apart, spread through
//! the scheduler's tick; written together at the end of the tick, a member finds several
//! requests per wake-up. `scripts/ab-cpu.sh` (eight rounds under `wrk -t1 -c64`, two nginx
//! members; BENCHMARKS.md): the binary's CPU a request, median, 24.1 → 22.5 µs, for ~400
//! more instructions a request.
//! The request's task keeps reading the connection; the writer holds it only to write.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};

use bytes::BytesMut;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service;

use super::super::service::Connector;
use super::flush;
use super::head::Scratch;

type Stream = <Connector as Service<http::Uri>>::Response;

/// A connection to a member, as the own path uses it.
pub(crate) struct Io {
    kind: Kind,
    /// Kept between answers for reading their heads.
    scratch: Scratch,
}

enum Kind {
    /// Plain TCP: heads go out through the runtime's writer.
    Plain(Arc<Plain>),
    /// TLS (or a plain stream that cannot be shared): written by the request's task.
    Other(Box<TokioIo<Stream>>),
}

/// A plain connection and the head waiting to be written on it.
pub(super) struct Plain {
    stream: TcpStream,
    job: Mutex<Job>,
}

/// The head of a connection's current request, and how far its writing went.
struct Job {
    head: Vec<u8>,
    state: State,
    /// The request's task, woken when the writer could not write the whole head.
    waker: Option<Waker>,
}

enum State {
    /// Nothing waits to be written.
    Idle,
    /// Queued for the writer.
    Queued,
    /// The writer wrote the first `n` bytes; the request's task writes the rest.
    Partial(usize),
    /// The writer's write failed: nothing of the head was sent.
    Failed(io::Error),
}

/// How a head went out.
pub(super) enum Started {
    /// Queued for the runtime's writer: [`Io::poll_sent`] says when it is out.
    Queued,
    /// The request's task writes it ([`Io::write_head`]).
    Direct,
}

impl Io {
    /// Wraps a connection the connector made.
    pub(crate) fn new(stream: Stream) -> Self {
        let kind = match stream {
            MaybeHttpsStream::Http(tcp) => Kind::Plain(Arc::new(Plain {
                stream: tcp.into_inner(),
                job: Mutex::new(Job {
                    head: Vec::new(),
                    state: State::Idle,
                    waker: None,
                }),
            })),
            other => Kind::Other(Box::new(TokioIo::new(other))),
        };
        Self {
            kind,
            scratch: Scratch::default(),
        }
    }

    /// What reading the last answer's head kept, for reading the next one's.
    pub(super) fn scratch(&mut self) -> &mut Scratch {
        &mut self.scratch
    }

    /// Starts sending `head`: on a plain connection, queued for the runtime's writer.
    pub(super) fn start(&mut self, head: &[u8]) -> Started {
        let Kind::Plain(plain) = &self.kind else {
            return Started::Direct;
        };
        {
            let mut job = plain.job();
            job.head.clear();
            job.head.extend_from_slice(head);
            job.state = State::Queued;
            job.waker = None;
        }
        if flush::queue(plain.clone()) {
            Started::Queued
        } else {
            plain.job().state = State::Idle;
            Started::Direct
        }
    }

    /// Writes `head` from the request's task.
    pub(super) async fn write_head(&mut self, head: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Other(io) => {
                io.write_all(head).await?;
                io.flush().await
            }
            Kind::Plain(plain) => {
                let plain = plain.clone();
                let mut at = 0;
                std::future::poll_fn(|cx| poll_write_from(&plain.stream, cx, head, &mut at)).await
            }
        }
    }

    /// Whether the queued head is out: ready with `Ok` once the writer wrote it (or when
    /// none was queued), with the writer's error if it failed. While it waits, the task is
    /// woken if the writer cannot finish.
    pub(super) fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Kind::Plain(plain) = &self.kind else {
            return Poll::Ready(Ok(()));
        };
        let mut job = plain.job();
        match std::mem::replace(&mut job.state, State::Idle) {
            State::Idle => Poll::Ready(Ok(())),
            State::Failed(e) => Poll::Ready(Err(e)),
            State::Queued => {
                job.state = State::Queued;
                if !job.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    job.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            State::Partial(mut at) => {
                let job = &mut *job;
                let out = poll_write_from(&plain.stream, cx, &job.head, &mut at);
                if out.is_pending() {
                    job.state = State::Partial(at);
                }
                out
            }
        }
    }

    /// Whether no part of a head waits to be written (a member may answer before it has
    /// the whole head: then the connection must not carry another request).
    pub(super) fn settled(&self) -> bool {
        match &self.kind {
            Kind::Other(_) => true,
            Kind::Plain(plain) => matches!(plain.job().state, State::Idle),
        }
    }

    /// Takes the head back from the writer if it has not written any of it yet; true if
    /// it was taken (so nothing of it will be sent).
    pub(super) fn withdraw(&mut self) -> bool {
        let Kind::Plain(plain) = &self.kind else {
            return false;
        };
        let mut job = plain.job();
        if matches!(job.state, State::Queued) {
            job.state = State::Idle;
            true
        } else {
            false
        }
    }

    /// Reads into `buf`'s spare room (at least some is there).
    pub(super) fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match &mut self.kind {
            Kind::Other(io) => pin!(io.read_buf(buf)).poll(cx),
            Kind::Plain(plain) => loop {
                ready!(plain.stream.poll_read_ready(cx))?;
                if let Some(out) = read_draining(&plain.stream, buf) {
                    return Poll::Ready(out);
                }
            },
        }
    }

    /// Whether the connection is still fit for a request: the member has not closed it and
    /// sent nothing since its last answer. Asks without waiting; on a quiet socket this
    /// costs no system call.
    pub(crate) fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match &mut self.kind {
            Kind::Other(io) => {
                let mut byte = [0u8; 1];
                let mut probe = ReadBuf::new(&mut byte);
                matches!(
                    Pin::new(&mut **io).poll_read(&mut cx, &mut probe),
                    Poll::Pending
                )
            }
            Kind::Plain(plain) => match plain.stream.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    let mut byte = [0u8; 1];
                    matches!(plain.stream.try_read(&mut byte),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
        }
    }
}

/// Reads into `buf` once; `None` when the socket had nothing after all (readiness cleared:
/// wait again).
///
/// Why not `try_read_buf` alone: it consumes the socket's readiness only when a read finds
/// nothing, so after an answer read whole the connection still looked readable, and the
/// check made before its next request ([`Io::still_open`]) paid a `recvfrom` that found
/// nothing: one system call a request more than nginx or hyper make (`strace -f -c`:
/// 60,014 `recvfrom` for 20,000 requests, 20,002 of them `EAGAIN`). A read that leaves room
/// in `buf` has drained the socket (epoll reports the next bytes as a new event), so the
/// readiness it was made on is consumed, as tokio's own `poll_read` does: inside `try_io`,
/// which clears only that readiness, never an event that came in since.
fn read_draining(stream: &TcpStream, buf: &mut BytesMut) -> Option<io::Result<usize>> {
    let room = buf.capacity() - buf.len();
    let mut drained = 0;
    let out = stream.try_io(tokio::io::Interest::READABLE, || {
        let n = stream.try_read_buf(buf)?;
        if n > 0 && n < room {
            drained = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match out {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => (drained > 0).then_some(Ok(drained)),
        out => Some(out),
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // closed (its request given up) before the writer came to it: nothing is sent
        self.withdraw();
    }
}

impl Plain {
    fn job(&self) -> MutexGuard<'_, Job> {
        self.job.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer stopped (its runtime is shutting down) with this head still queued: not
    /// written, and the request's task, if it is still there, is told so.
    pub(super) fn abandon(&self) {
        let mut job = self.job();
        if !matches!(job.state, State::Queued) {
            return;
        }
        job.state = State::Failed(io::Error::other("the runtime's writer stopped"));
        let waker = job.waker.take();
        drop(job);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The writer's part: writes the queued head, unless it was withdrawn. What it cannot
    /// write without waiting is left to the request's task, which is woken for it.
    pub(super) fn write_queued(&self) {
        let mut job = self.job();
        if !matches!(job.state, State::Queued) {
            return;
        }
        let mut at = 0;
        let state = loop {
            match self.stream.try_write(&job.head[at..]) {
                Ok(n) if n > 0 => {
                    at += n;
                    if at == job.head.len() {
                        break State::Idle;
                    }
                }
                Ok(_) => break State::Failed(io::ErrorKind::WriteZero.into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break State::Partial(at),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if at == 0 => break State::Failed(e),
                // part of the head went out: the request's task meets the error itself
                Err(_) => break State::Partial(at),
            }
        };
        job.state = state;
        let waker = match job.state {
            State::Idle => None,
            _ => job.waker.take(),
        };
        drop(job);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Writes `bytes[*at..]` on `stream` from the request's task.
fn poll_write_from(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    bytes: &[u8],
    at: &mut usize,
) -> Poll<io::Result<()>> {
    while *at < bytes.len() {
        ready!(stream.poll_write_ready(cx))?;
        match stream.try_write(&bytes[*at..]) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => *at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    /// A member connection on loopback: ours wrapped as the pool wraps it, and the member's.
    async fn connection() -> (Io, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, member) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let io = Io::new(MaybeHttpsStream::Http(TokioIo::new(ours.unwrap())));
        (io, member.unwrap().0)
    }

    fn stream(io: &Io) -> &TcpStream {
        match &io.kind {
            Kind::Plain(plain) => &plain.stream,
            Kind::Other(_) => unreachable!("a plain connection"),
        }
    }

    /// Whether the socket still reads as readable, which makes the next look a system call.
    fn looks_readable(io: &Io) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        stream(io).poll_read_ready(&mut cx).is_ready()
    }

    async fn read(io: &mut Io, buf: &mut BytesMut) -> usize {
        let read = poll_fn(|cx| io.poll_read_buf(cx, buf));
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the bytes waiting are read")
            .unwrap()
    }

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// A connection whose member has sent [`ANSWER`], once our side has seen it arrive.
    async fn answered() -> (Io, TcpStream) {
        let (io, mut member) = connection().await;
        member.write_all(ANSWER).await.unwrap();
        stream(&io).readable().await.unwrap();
        (io, member)
    }

    #[tokio::test]
    async fn an_answer_read_whole_leaves_the_connection_quiet() {
        let (mut io, mut member) = answered().await;
        let mut buf = BytesMut::with_capacity(4096);
        assert_eq!(read(&mut io, &mut buf).await, ANSWER.len());
        assert_eq!(&buf[..], ANSWER);
        // before: still readable, so `still_open` paid a `recvfrom` finding nothing
        assert!(!looks_readable(&io), "a short read consumes the readiness");
        assert!(io.still_open());

        // what the member sends next is still seen, by a read and by the check
        member.write_all(b"late").await.unwrap();
        buf.clear();
        assert_eq!(read(&mut io, &mut buf).await, 4);
        assert_eq!(&buf[..], b"late");
        member.write_all(b"later").await.unwrap();
        stream(&io).readable().await.unwrap();
        assert!(
            !io.still_open(),
            "bytes before a request make the connection unfit"
        );
    }

    #[tokio::test]
    async fn a_read_that_fills_the_buffer_keeps_the_readiness() {
        let (mut io, _member) = answered().await;
        let mut buf = BytesMut::with_capacity(8);
        let first = read(&mut io, &mut buf).await;
        assert_eq!(first, buf.capacity(), "the buffer is filled");
        // more may wait: the rest is read without a new event from the member
        assert!(looks_readable(&io));
        let mut rest = BytesMut::with_capacity(4096);
        assert_eq!(read(&mut io, &mut rest).await, ANSWER.len() - first);
        buf.unsplit(rest);
        assert_eq!(&buf[..], ANSWER);
    }

    #[tokio::test]
    async fn a_closed_member_reads_as_the_end() {
        let (mut io, member) = connection().await;
        drop(member);
        let mut buf = BytesMut::with_capacity(64);
        assert_eq!(read(&mut io, &mut buf).await, 0);
        assert!(!io.still_open());
    }
}
