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
/// answer, whose client reset its stream or left, is finished too, unanswered).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Progress>);

impl InFlight {
    /// The answer to a request on `progress`'s connection.
    pub(crate) const fn new(progress: Arc<Progress>) -> Self {
        Self(progress)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answer_finished();
    }
}

pin_project! {
    /// A response body that tells the connection when the response is finished.
    pub(crate) struct Tracked<B> {
        #[pin]
        body: B,
        guard: InFlight,
    }
}

impl<B> Tracked<B> {
    /// The answer's body, with the request's guard: the request was answered.
    pub(crate) fn new(body: B, guard: InFlight) -> Self {
        guard.0.answered();
        Self { body, guard }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
