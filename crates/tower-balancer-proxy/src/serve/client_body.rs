//! The body of a client's request as the server hands it to the stack.
//!
//! Why a type of our own rather than hyper's `Incoming`: the server reads the common request
//! (an HTTP/1.1 `GET` or `HEAD` without a body) itself, and hyper's body cannot be made
//! outside hyper. Everything with a body, HTTP/2 and protocol switches still come through
//! hyper, and their bodies are hyper's, unchanged.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::timeout::Progress;
use super::upload_limit::{Held, Whole};

/// A client's request body: hyper's stream, or none at all.
#[derive(Debug)]
pub struct ClientBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Hyper(Incoming),
    /// Over HTTP/2: its bytes are counted as the connection's payload (`flood.rs`); boxed,
    /// so the common body (none, or hyper's) is no larger: every layer moves it.
    Counted(Box<Counted>),
    /// An HTTP/2 request's body read whole, past its connection's upload limit
    /// (`upload_limit.rs`).
    Whole(Box<Whole>),
    Empty,
}

/// An HTTP/2 request's body, counted on its connection's progress, holding one of the
/// connection's upload slots until it ends or is dropped.
#[derive(Debug)]
struct Counted {
    /// What was read of the body before it was handed on, sent first.
    read: Option<Bytes>,
    body: Incoming,
    progress: Arc<Progress>,
    /// Whether it still holds its upload slot
    /// ([`Uploads::start`](super::upload_limit::Uploads::start)).
    uploading: bool,
}

impl Counted {
    /// The body ended (or failed): its slot is free for the connection's next upload.
    fn ended(&mut self) {
        if std::mem::take(&mut self.uploading) {
            self.progress.uploads().end();
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.ended();
    }
}

impl ClientBody {
    /// The body hyper read.
    pub(crate) const fn hyper(body: Incoming) -> Self {
        Self {
            kind: Kind::Hyper(body),
        }
    }

    /// The body hyper read for an HTTP/2 request on `progress`'s connection, which admitted
    /// it as an upload ([`Uploads::start`](super::upload_limit::Uploads::start)): the slot
    /// is given back when the body ends or is dropped.
    pub(crate) fn counted(body: Incoming, progress: Arc<Progress>) -> Self {
        Self::counted_after(Bytes::new(), body, progress)
    }

    /// [`ClientBody::counted`], for a body of which `read` was read already: it comes first.
    pub(super) fn counted_after(read: Bytes, body: Incoming, progress: Arc<Progress>) -> Self {
        Self {
            kind: Kind::Counted(Box::new(Counted {
                read: Some(read).filter(|r| !r.is_empty()),
                body,
                progress,
                uploading: true,
            })),
        }
    }

    /// A body read whole: `data`, then `trailers`; `held` is given back to the connection's
    /// read-ahead budget when it is dropped.
    pub(super) fn buffered(data: Bytes, trailers: Option<http::HeaderMap>, held: Held) -> Self {
        Self {
            kind: Kind::Whole(Box::new(Whole {
                data: Some(data).filter(|d| !d.is_empty()),
                trailers,
                _held: held,
            })),
        }
    }

    /// No body: a request whose head said it has none.
    pub(crate) const fn empty() -> Self {
        Self { kind: Kind::Empty }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Hyper(b) => Pin::new(b).poll_frame(cx),
            Kind::Counted(counted) => {
                if let Some(read) = counted.read.take() {
                    return Poll::Ready(Some(Ok(Frame::data(read))));
                }
                let frame = Pin::new(&mut counted.body).poll_frame(cx);
                match &frame {
                    Poll::Ready(Some(Ok(f))) => {
                        counted
                            .progress
                            .overhead()
                            .body(f.data_ref().map_or(0, bytes::Buf::remaining));
                        if counted.body.is_end_stream() {
                            counted.ended();
                        }
                    }
                    Poll::Ready(_) => counted.ended(),
                    Poll::Pending => {}
                }
                frame
            }
            Kind::Whole(whole) => Poll::Ready(
                whole
                    .data
                    .take()
                    .map(Frame::data)
                    .or_else(|| whole.trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            Kind::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Hyper(b) => b.is_end_stream(),
            Kind::Counted(c) => c.read.is_none() && c.body.is_end_stream(),
            Kind::Whole(w) => w.data.is_none() && w.trailers.is_none(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Hyper(b) => b.size_hint(),
            Kind::Counted(c) => {
                let read = c.read.as_ref().map_or(0, |r| r.len() as u64);
                let rest = c.body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + read);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + read);
                }
                hint
            }
            Kind::Whole(w) => SizeHint::with_exact(w.data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}
