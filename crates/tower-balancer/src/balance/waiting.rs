//! A request waiting in the queue for a member with room.
//!
//! Why its own future: the wait holds the request and a ready clone of the inner service
//! until a finishing request hands over its slot ([`WaitQueue`](crate::registry::WaitQueue)),
//! then calls the member exactly as a request that never waited. It lives boxed inside the
//! balance layer's response future, so requests that never wait do not carry it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::body::RequestBody;
use super::error::BalanceError;
use super::future::Granted;
use super::service::{send, OutcomeSink};
use crate::registry::{InFlight, Registry};
use crate::BoxError;

pin_project! {
    /// A request waiting for a member with room; yields the member's call once it has one,
    /// or [`BalanceError::QueueTimeout`].
    pub struct Waiting<I, B> {
        slot: oneshot::Receiver<InFlight>,
        #[pin]
        deadline: Sleep,
        timeout: Duration,
        granted: Option<InFlight>,
        inner: I,
        req: Option<Request<B>>,
        registry: Registry,
        report: Arc<OutcomeSink>,
        done: bool,
    }

    impl<I, B> PinnedDrop for Waiting<I, B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                // the client gave up: leave the queue now, so its depth is true at once
                this.slot.close();
                let queue = this.registry.load_stats().queue();
                // a slot handed over was counted with its wait when it was handed over
                let handed = this.granted.is_some() || this.slot.try_recv().is_ok();
                let started = this.deadline.deadline().checked_sub(*this.timeout);
                match started {
                    Some(t) if !handed => queue.note_gave_up(t.elapsed()),
                    _ => queue.forget_gone(),
                }
            }
        }
    }
}

impl<I, B> Waiting<I, B> {
    pub(crate) fn new(
        slot: oneshot::Receiver<InFlight>,
        timeout: Duration,
        inner: I,
        req: Request<B>,
        registry: Registry,
        report: Arc<OutcomeSink>,
    ) -> Self {
        Self {
            slot,
            deadline: tokio::time::sleep_until(crate::deadline::deadline(Instant::now(), timeout)),
            timeout,
            granted: None,
            inner,
            req: Some(req),
            registry,
            report,
            done: false,
        }
    }
}

impl<I, B> std::fmt::Debug for Waiting<I, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("granted", &self.granted.is_some())
            .finish_non_exhaustive()
    }
}

impl<I, B, RB> Future for Waiting<I, B>
where
    I: Service<Request<RequestBody<B>>, Response = Response<RB>>,
    I::Error: Into<BoxError>,
{
    type Output = Result<Granted<I::Future>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.granted.is_none() {
            match Pin::new(&mut *this.slot).poll(cx) {
                Poll::Ready(Ok(slot)) => *this.granted = Some(slot),
                // the queue went away with the registry
                Poll::Ready(Err(_)) => {
                    *this.done = true;
                    return Poll::Ready(Err(Box::new(BalanceError::NoEligibleMember)));
                }
                Poll::Pending => {
                    if this.deadline.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // out of time, unless a slot came just now
                    this.slot.close();
                    match this.slot.try_recv() {
                        Ok(slot) => *this.granted = Some(slot),
                        Err(_) => {
                            *this.done = true;
                            this.registry
                                .load_stats()
                                .queue()
                                .note_timeout(*this.timeout);
                            let e = BalanceError::QueueTimeout(*this.timeout);
                            return Poll::Ready(Err(Box::new(e)));
                        }
                    }
                }
            }
        }
        if let Err(e) = std::task::ready!(this.inner.poll_ready(cx)) {
            return Poll::Ready(Err(e.into()));
        }
        let (Some(in_flight), Some(req)) = (this.granted.take(), this.req.take()) else {
            return Poll::Ready(Err("queued request polled after completion".into()));
        };
        *this.done = true;
        let (fut, started, limit) = send(this.inner, &in_flight, req);
        Poll::Ready(Ok(Granted {
            fut,
            in_flight,
            started,
            limit,
            report: this.report.clone(),
        }))
    }
}
