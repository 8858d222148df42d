//! A member's answer body, whichever client path read it.
//!
//! Why one type: the forwarder answers with one response type, and a member's answer is read
//! either by hyper's client (requests with a body, protocol switches, HTTP/2 members) or by
//! the client's own HTTP/1.1 path (requests without a body).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1::{H1Body, H1Error};

/// A member's answer body.
pub struct MemberBody {
    kind: Kind,
}

enum Kind {
    Hyper(Incoming),
    Own(H1Body),
}

impl MemberBody {
    pub(crate) const fn hyper(body: Incoming) -> Self {
        Self {
            kind: Kind::Hyper(body),
        }
    }

    pub(crate) const fn own(body: H1Body) -> Self {
        Self {
            kind: Kind::Own(body),
        }
    }

    /// Whether the client's own HTTP/1.1 path read it (its head is then clean already).
    pub(crate) const fn is_own(&self) -> bool {
        matches!(self.kind, Kind::Own(_))
    }
}

/// Reading a member's answer body failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemberBodyError {
    /// Read by hyper's client.
    #[error("reading the member's answer: {0}")]
    Hyper(#[from] hyper::Error),
    /// Read by the client's own HTTP/1.1 path.
    #[error("reading the member's answer: {0}")]
    Own(#[from] H1Error),
}

impl Body for MemberBody {
    type Data = Bytes;
    type Error = MemberBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, MemberBodyError>>> {
        match &mut self.get_mut().kind {
            Kind::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(MemberBodyError::Hyper))),
            Kind::Own(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(MemberBodyError::Own))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Hyper(b) => b.is_end_stream(),
            Kind::Own(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Hyper(b) => b.size_hint(),
            Kind::Own(b) => b.size_hint(),
        }
    }
}

impl std::fmt::Debug for MemberBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Hyper(b) => b.fmt(f),
            Kind::Own(b) => b.fmt(f),
        }
    }
}
