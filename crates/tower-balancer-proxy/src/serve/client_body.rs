//! The body of a client's request as the server hands it to the stack.
//!
//! Why a type of our own rather than hyper's `Incoming`: the server reads the common request
//! (an HTTP/1.1 `GET` or `HEAD` without a body) itself, and hyper's body cannot be made
//! outside hyper. Everything with a body, HTTP/2 and protocol switches still come through
//! hyper, and their bodies are hyper's, unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

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
    Counted(Box<(Incoming, std::sync::Arc<super::timeout::Progress>)>),
    Empty,
}

impl ClientBody {
    /// The body hyper read.
    pub(crate) const fn hyper(body: Incoming) -> Self {
        Self {
            kind: Kind::Hyper(body),
        }
    }

    /// The body hyper read for an HTTP/2 request on `progress`'s connection.
    pub(crate) fn counted(
        body: Incoming,
        progress: std::sync::Arc<super::timeout::Progress>,
    ) -> Self {
        Self {
            kind: Kind::Counted(Box::new((body, progress))),
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
                let (b, progress) = &mut **counted;
                let frame = Pin::new(b).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &frame {
                    progress
                        .overhead()
                        .body(f.data_ref().map_or(0, bytes::Buf::remaining));
                }
                frame
            }
            Kind::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Hyper(b) => b.is_end_stream(),
            Kind::Counted(c) => c.0.is_end_stream(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Hyper(b) => b.size_hint(),
            Kind::Counted(c) => c.0.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}
