//! The member client's own HTTP/1.1 path, for requests without a body.
//!
//! Why a path of our own beside hyper's client: hyper's client connection runs in a task of
//! its own, reached by a channel, with 16 KiB of buffers held for as long as the connection
//! is pooled. Most requests a balancer forwards have no body (`GET`, `HEAD`, `DELETE`), and
//! for those an exchange is one write of the head and reads of the answer: done here in the
//! request's own task (the head of a plain connection written by the runtime's writer,
//! with the others of its tick: see `conn`), that costs a fraction of the instructions, and
//! a pooled connection holds only its socket. Requests with a body, protocol switches and tunnels stay on
//! hyper's client, and HTTP/2 members too. The answer is read by hyper's client's rules
//! (see `head` and `chunked`), so the two paths frame every answer alike.

mod body;
mod chunked;
mod conn;
mod error;
mod flush;
mod head;
mod seen;

use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use http::{header, Method, Request, Response};
use tower_balancer::registry::Member;

pub(crate) use body::H1Body;
pub(crate) use conn::Io;
pub use error::H1Error;
pub(crate) use head::encode;

use conn::Started;
use head::{Framing, Parsed};

/// How much is read from a member at a time.
const READ_SIZE: usize = 8 * 1024;

/// The most interim (1xx) answers before the final one.
const MAX_INTERIM: usize = 16;

/// Where a connection goes back once its answer is read.
pub(crate) trait Home: Send + Sync {
    /// Keeps `io`, open and between answers, for `member`'s next request.
    fn checkin(self: Arc<Self>, member: &Arc<Member>, io: Box<Io>);
}

/// Whether `req` takes this path: no body, no protocol switch, not a tunnel.
pub(crate) fn takes<B: http_body::Body>(req: &Request<B>) -> bool {
    req.body().is_end_stream()
        && req.method() != Method::CONNECT
        && !req.headers().contains_key(header::UPGRADE)
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The head could not be written: the member had closed the connection, and nothing of
    /// the request can have been acted on.
    Unsent(H1Error),
    /// The member closed or reset the connection after the head went out and before a
    /// byte of its answer: on a pooled connection, most likely its keep-alive timeout
    /// closing it as the request arrived.
    Dropped(H1Error),
    /// The exchange broke after the head went out.
    Failed(H1Error),
}

/// Sends the request `head` on `io` and reads the answer's head; the answer's body reads
/// the rest and gives the connection back to `home`.
pub(crate) async fn send(
    mut io: Box<Io>,
    head: &[u8],
    method: &Method,
    home: (Arc<dyn Home>, Arc<Member>),
) -> Result<Response<H1Body>, Failure> {
    // a plain connection's head goes out with the others queued in this tick
    let mut sent = match io.start(head) {
        Started::Queued => false,
        Started::Direct => {
            if let Err(e) = io.write_head(head).await {
                return Err(Failure::Unsent(H1Error::Io(e)));
            }
            true
        }
    };
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut interim = 0;
    let mut answered = false;
    loop {
        if !buf.is_empty() {
            match head::parse(&mut buf, method, io.scratch()).map_err(Failure::Failed)? {
                Parsed::Partial => {}
                Parsed::Informational => {
                    interim += 1;
                    if interim > MAX_INTERIM {
                        return Err(Failure::Failed(H1Error::TooManyInterim));
                    }
                    continue;
                }
                Parsed::Final(h) => {
                    if short(h.framing, &buf) {
                        if let Some(e) = closed_already(&mut io, &mut buf).await {
                            // the member sent part of its answer and closed: no part of it
                            // has gone anywhere yet, so the exchange fails here, where
                            // failover can still send an idempotent request elsewhere,
                            // instead of in the body, where the client could only be
                            // given a 502 or a cut answer
                            return Err(Failure::Failed(e));
                        }
                    }
                    // answered before the whole head went out: the rest is never written,
                    // so the connection carries no other request
                    let keep_alive = h.keep_alive && (sent || io.settled());
                    let body = H1Body::new(io, buf, h.framing, keep_alive, home);
                    return Ok(h.response.map(|()| body));
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_SIZE);
        }
        let read = read_more(&mut io, &mut buf, &mut sent).await?;
        let failed = match read {
            Ok(0) => H1Error::Incomplete,
            Ok(_) => {
                answered = true;
                continue;
            }
            Err(e) => H1Error::Io(e),
        };
        // over TLS, a member that closes without `close_notify` (many do, at their
        // keep-alive timeout) reads as an unexpected end of file
        let closed = matches!(&failed, H1Error::Incomplete)
            || matches!(&failed, H1Error::Io(e) if matches!(e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof));
        return Err(if closed && !answered {
            Failure::Dropped(failed)
        } else {
            Failure::Failed(failed)
        });
    }
}

/// Whether the body `framing` frames is not all in `buf` yet. A chunked body is taken as
/// whole when `buf` ends as its last chunk without trailers does: a wrong guess costs one
/// read that does not wait, or leaves a close for the body to find.
fn short(framing: Framing, buf: &BytesMut) -> bool {
    match framing {
        Framing::Length(n) => (buf.len() as u64) < n,
        Framing::Chunked => !buf.ends_with(b"0\r\n\r\n"),
        Framing::Close => false,
    }
}

/// Whether the member has closed or reset the connection already, asked with one read that
/// does not wait (what it reads is the body's).
async fn closed_already(io: &mut Io, buf: &mut BytesMut) -> Option<H1Error> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_SIZE);
    }
    std::future::poll_fn(|cx| {
        Poll::Ready(match io.poll_read_buf(cx, buf) {
            Poll::Ready(Ok(0)) => Some(H1Error::Incomplete),
            Poll::Ready(Err(e)) => Some(H1Error::Io(e)),
            Poll::Ready(Ok(_)) | Poll::Pending => None,
        })
    })
    .await
}

/// Reads more of the answer into `buf`. While the head is not known to be out (`sent`),
/// also asks whether the writer wrote it: its failure, or the member closing, failing or
/// speaking before the head went out (the head then taken back from the writer), means
/// nothing of the request was sent, and bytes before it answer no request.
async fn read_more(
    io: &mut Io,
    buf: &mut BytesMut,
    sent: &mut bool,
) -> Result<std::io::Result<usize>, Failure> {
    let read = std::future::poll_fn(|cx| {
        if !*sent {
            match io.poll_sent(cx) {
                Poll::Ready(Ok(())) => *sent = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        io.poll_read_buf(cx, buf).map(Ok)
    })
    .await
    .map_err(|e| Failure::Unsent(H1Error::Io(e)))?;
    if !*sent && io.withdraw() {
        return Err(Failure::Unsent(match read {
            Ok(0) => H1Error::Incomplete,
            Ok(_) => H1Error::Io(std::io::ErrorKind::InvalidData.into()),
            Err(e) => H1Error::Io(e),
        }));
    }
    Ok(read)
}

/// Reads `wire` as a member's whole answer to a request with `method`, arriving `piece`
/// bytes at a time, as the own path does: the final head, then the body by its framing.
/// Returns the head and the body's bytes, or the first error. For the fuzz harness and
/// tests; no I/O.
#[cfg(feature = "fuzzing")]
pub(crate) fn read_answer(
    wire: &[u8],
    method: &Method,
    piece: usize,
) -> Result<(Response<()>, Vec<u8>), H1Error> {
    let mut pieces = wire.chunks(piece.max(1));
    let mut buf = BytesMut::new();
    let mut interim = 0;
    let mut scratch = head::Scratch::default();
    let head = loop {
        match head::parse(&mut buf, method, &mut scratch)? {
            Parsed::Final(h) => break h,
            Parsed::Informational => {
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(H1Error::TooManyInterim);
                }
            }
            Parsed::Partial => buf.extend_from_slice(pieces.next().ok_or(H1Error::Incomplete)?),
        }
    };
    let mut body = Vec::new();
    match head.framing {
        head::Framing::Length(n) => {
            buf.extend(pieces.flatten());
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if buf.len() < n {
                return Err(H1Error::Incomplete);
            }
            body.extend_from_slice(&buf[..n]);
        }
        head::Framing::Close => {
            body.extend_from_slice(&buf);
            body.extend(pieces.flatten());
        }
        head::Framing::Chunked => {
            let mut d = chunked::Chunked::new();
            loop {
                match d.step(&mut buf)? {
                    chunked::Step::Data(b) => body.extend_from_slice(&b),
                    chunked::Step::Trailers(_) | chunked::Step::End => break,
                    chunked::Step::More => {
                        buf.extend_from_slice(pieces.next().ok_or(H1Error::Incomplete)?);
                    }
                }
            }
        }
    }
    Ok((head.response, body))
}
