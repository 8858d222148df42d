//! Body wrappers that count bytes per member and end the in-flight count at body end.
//!
//! Why at body end: a response whose headers arrived may stream for minutes; releasing the
//! in-flight count at headers (as some balancers do) makes least-outstanding and P2C send more
//! work to a member that is still busy.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::service::OutcomeSink;
use crate::log_budget::{LogBudget, PER_SECOND};
use crate::registry::{InFlight, Member};

pin_project! {
    /// The request body as the inner service sees it: the client's body, counted into the
    /// member's `bytes_to_member`.
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        member: Arc<Member>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, member: Arc<Member>) -> Self {
        Self { inner, member }
    }

    /// The client's body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(d) = f.data_ref() {
                this.member
                    .stats()
                    .add_bytes_to_member(d.remaining() as u64);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body as the client sees it: the member's body, counted into the member's
    /// `bytes_from_member`, holding the request in flight until it ends, fails or is dropped,
    /// and settling the member's failure streak: a body that ends ends it, one that breaks
    /// off is a failure of the member (one dropped part way, the client gone, is neither).
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
        // where the body's verdict goes, while it is still to come
        verdict: Option<Arc<OutcomeSink>>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, in_flight: InFlight, verdict: Option<Arc<OutcomeSink>>) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
            verdict,
        }
    }

    /// Whether the body still counts as in flight.
    pub fn is_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(d), Some(g)) = (f.data_ref(), this.in_flight.as_ref()) {
                    g.member()
                        .stats()
                        .add_bytes_from_member(d.remaining() as u64);
                }
                // the last frame: hyper's server polls no further once a body says it is
                // over, so its end is settled here, not at a `None` that may never be asked for
                if this.inner.is_end_stream() {
                    ended(this.in_flight, this.verdict);
                }
            }
            // the end or an error: the request is over for this member
            None => ended(this.in_flight, this.verdict),
            Some(Err(e)) => {
                // the client gets a cut answer (or, before its first byte, a closed
                // connection): said once here, where the member is known
                if let Some(g) = this.in_flight.take() {
                    log_body_failure(g.member(), &e);
                    if let Some(sink) = this.verdict.take() {
                        sink.body_failed(g.member());
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body came whole: the request is over for its member, and ends its failure streak.
fn ended(in_flight: &mut Option<InFlight>, verdict: &mut Option<Arc<OutcomeSink>>) {
    let done = in_flight.take();
    if let (Some(g), Some(_)) = (done, verdict.take()) {
        g.member().stats().body_ended();
    }
}

/// A WARN line for an answer body that failed, at most [`PER_SECOND`] a second; the rest at
/// DEBUG, and counted (a member that cuts every answer at full load must not fill the disk:
/// `log_budget`).
fn log_body_failure(member: &Member, e: &dyn std::fmt::Display) {
    static BUDGET: LogBudget = LogBudget::warn(PER_SECOND, "member answer bodies that failed");
    if BUDGET.admit() {
        tracing::warn!(member = %member.id(), error = %e, "the member's answer body failed");
    } else {
        tracing::debug!(member = %member.id(), error = %e, "the member's answer body failed");
    }
}
