//! A member's answer body, read from its connection by the request's own task.
//!
//! Why the body owns the connection: with no connection task, whoever reads the body reads
//! the socket. The body frames what it reads (by length, by chunks, or to the close) and,
//! once the answer is whole and nothing follows it, gives the connection back to the pool
//! with its read buffer dropped: an idle pooled connection holds its socket and nothing
//! else. A body dropped before its end closes the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tower_balancer::registry::Member;

use super::chunked::{Chunked, Step};
use super::error::H1Error;
use super::head::Framing;
use super::{Home, Io, READ_SIZE};

enum Reading {
    Length(u64),
    /// Boxed: most answers have a length, and the body moves through every layer.
    Chunked(Box<Chunked>),
    Close,
    Done,
}

/// An answer body read over the member client's own HTTP/1.1 path.
pub(crate) struct H1Body {
    io: Option<Box<Io>>,
    buf: BytesMut,
    reading: Reading,
    keep_alive: bool,
    home: Option<(Arc<dyn Home>, Arc<Member>)>,
}

impl H1Body {
    /// The body after a head; `buf` holds what was read past the head.
    pub(super) fn new(
        io: Box<Io>,
        buf: BytesMut,
        framing: Framing,
        keep_alive: bool,
        home: (Arc<dyn Home>, Arc<Member>),
    ) -> Self {
        let mut body = Self {
            io: Some(io),
            buf,
            reading: match framing {
                Framing::Length(n) => Reading::Length(n),
                Framing::Chunked => Reading::Chunked(Box::new(Chunked::new())),
                Framing::Close => Reading::Close,
            },
            keep_alive,
            home: Some(home),
        };
        if matches!(body.reading, Reading::Length(0)) {
            // nothing to read: the connection is free now, not when the body is polled
            body.finish();
        }
        body
    }

    /// The answer is whole: the connection goes back to the pool if it may carry another
    /// request and nothing arrived past the answer (stray bytes would be taken for the next
    /// answer's start).
    fn finish(&mut self) {
        self.reading = Reading::Done;
        let io = self.io.take();
        if self.keep_alive && self.buf.is_empty() {
            if let (Some(io), Some((home, member))) = (io, self.home.take()) {
                home.checkin(&member, io);
            }
        }
        self.buf = BytesMut::new();
    }

    /// A broken answer: the connection is closed.
    fn fail(&mut self, e: H1Error) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.reading = Reading::Done;
        self.io = None;
        self.buf = BytesMut::new();
        Poll::Ready(Some(Err(e)))
    }

    /// Reads more from the member; `Ok(0)` when it has closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_SIZE);
        }
        io.poll_read_buf(cx, &mut self.buf)
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        loop {
            match &mut this.reading {
                Reading::Done => return Poll::Ready(None),
                Reading::Length(rem) if !this.buf.is_empty() => {
                    let n = usize::try_from(*rem)
                        .unwrap_or(usize::MAX)
                        .min(this.buf.len());
                    *rem -= n as u64;
                    let data = this.buf.split_to(n).freeze();
                    if *rem == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Reading::Close if !this.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                }
                Reading::Chunked(d) => match d.step(&mut this.buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::Trailers(t)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::More) => {}
                    Err(e) => return this.fail(e),
                },
                Reading::Length(_) | Reading::Close => {}
            }
            match ready!(this.poll_fill(cx)) {
                Ok(0) if matches!(this.reading, Reading::Close) => {
                    // the close is the end of this body, and of the connection
                    this.reading = Reading::Done;
                    this.io = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(H1Error::Incomplete),
                Ok(_) => {}
                Err(e) => return this.fail(H1Error::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.reading {
            Reading::Done => true,
            Reading::Length(n) => *n == 0,
            Reading::Chunked(d) => d.is_done(),
            Reading::Close => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.reading {
            Reading::Done => SizeHint::with_exact(0),
            Reading::Length(n) => SizeHint::with_exact(*n),
            Reading::Chunked(_) | Reading::Close => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for H1Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Body")
            .field("buffered", &self.buf.len())
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}
