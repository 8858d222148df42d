//! An answer's body as the server hands it over, tracked for the connection's limits.
//!
//! Why: the connection's idle limits need to know when its answers are finished, which
//! hyper does not tell: hyper drops an answer's body once it is sent (or the client is
//! gone), so the body carries a guard whose drop says so. An HTTP/2 connection with no
//! answer under way can then be closed when idle, and one with answers under way is not.
//! A request dropped before it had an answer was abandoned by its client (over HTTP/2, a
//! reset stream), which the connection counts too (`Progress::abandoned_too_many`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::timeout::Progress;

/// Marks a request's answer finished when dropped (a request dropped before it had an
/// answer, whose client reset its stream or left, is finished too, unanswered), and lets
/// go of the places under the per-client cap a request behind a trusted proxy holds.
#[derive(Debug)]
pub(crate) struct InFlight {
    progress: Arc<Progress>,
    /// The places under the per-client cap, held until the answer is finished.
    place: Option<super::place::MemberPlace>,
    /// An HTTP/2 stream's claim on a place for its member connection, given back when the
    /// member's part of the exchange is over.
    claim: Option<super::stream_claim::StreamClaim>,
}

impl InFlight {
    /// The answer to a request on `progress`'s connection.
    pub(crate) const fn new(progress: Arc<Progress>) -> Self {
        Self {
            progress,
            place: None,
            claim: None,
        }
    }

    /// Gives `claim` back when the member's part of the exchange is over.
    pub(crate) fn claims(&mut self, claim: super::stream_claim::StreamClaim) {
        self.claim = Some(claim);
    }

    /// A stream's claim, if it has one.
    pub(crate) const fn claim(&self) -> Option<&super::stream_claim::StreamClaim> {
        self.claim.as_ref()
    }

    /// The member's part of the exchange is over (the answer read whole, or failed): the
    /// stream's place under the connection cap, if it claimed one, goes back.
    fn exchange_over(&self) {
        if let Some(claim) = &self.claim {
            claim.release();
        }
    }

    /// Holds `place` until the answer is finished.
    pub(crate) fn hold(&mut self, place: super::place::MemberPlace) {
        self.place = Some(place);
    }

    /// The place it holds, for a tunnel its answer switched to, to hold as long as it lasts.
    pub(crate) fn take_place(&mut self) -> Option<super::place::MemberPlace> {
        self.place.take()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.exchange_over();
        self.progress.answer_finished();
    }
}

pin_project! {
    /// A response body that tells the connection when the response is finished, and
    /// whether it was over (whole, or failed by its member) before the client let it go.
    pub(crate) struct Tracked<B> {
        #[pin]
        body: B,
        guard: InFlight,
        whole: bool,
    }
}

impl<B: Body> Tracked<B> {
    /// The answer's body, with the request's guard.
    pub(crate) fn new(body: B, guard: InFlight) -> Self {
        let mut this = Self {
            body,
            guard,
            whole: false,
        };
        if this.body.is_end_stream() {
            this.went_whole();
        }
        this
    }

    fn went_whole(&mut self) {
        self.whole = true;
        self.guard.progress.answered();
        self.guard.exchange_over();
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let mut body = this.body;
        let frame = body.as_mut().poll_frame(cx);
        // the end (or the member's failure, no fault of the client's): the answer is over;
        // a body dropped before it is one the client abandoned
        let over = match &frame {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
            Poll::Pending => false,
        };
        if over && !*this.whole {
            *this.whole = true;
            this.guard.progress.answered();
            // read whole from the member: its connection is free whatever the client's pace
            this.guard.exchange_over();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
