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

/// Marks a request's answer finished when dropped, and the request abandoned when it is
/// dropped before there was an answer (the client reset its stream, or went away).
#[derive(Debug)]
pub(crate) struct InFlight {
    progress: Arc<Progress>,
    answered: bool,
}

impl InFlight {
    /// The answer to a request on `progress`'s connection.
    pub(crate) const fn new(progress: Arc<Progress>) -> Self {
        Self {
            progress,
            answered: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.progress.answer_finished(self.answered);
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
    pub(crate) const fn new(body: B, mut guard: InFlight) -> Self {
        guard.answered = true;
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
