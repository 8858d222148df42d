//! The balance layer's response future: observes the outcome, tags the response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::body::ResponseBody;
use super::error::{AttemptError, BalanceError};
use super::extensions::{ServedBy, UploadProgress};
use super::service::OutcomeSink;
use crate::outcome::{FailureKind, Outcome};
use crate::registry::InFlight;
use crate::task_timer::{self, TaskSleep};
use crate::upstream::{find_upstream_error, UpstreamError, UpstreamErrorKind};
use crate::BoxError;

pin_project! {
    /// Response future of [`Balance`](super::Balance); `W` is the wait for a member with
    /// room ([`Waiting`](super::Waiting)), boxed, so a request that never waits pays one
    /// pointer for it.
    pub struct ResponseFuture<F, W> {
        #[pin]
        kind: Kind<F, W>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, W> {
        Queued {
            wait: Pin<Box<W>>,
        },
        Attempt {
            #[pin]
            fut: F,
            // the per-try limit; its timer is made only once the member makes the attempt
            // wait, so an attempt answered at once pays for none, and on the connection's
            // own timer when the server gave it one (`task_timer`)
            limit: Option<AttemptLimit>,
            sleep: Option<TaskSleep>,
            attempt: Option<Attempt>,
        },
        Failed {
            error: Option<BalanceError>,
        },
    }
}

/// An attempt's time limit to response headers ([`AttemptTimeout`](super::AttemptTimeout)),
/// run only while the member has the move when the request carries an [`UploadProgress`].
#[derive(Debug, Clone)]
pub(crate) struct AttemptLimit {
    pub(crate) timeout: Duration,
    pub(crate) upload: Option<UploadProgress>,
}

impl AttemptLimit {
    /// When the limit counted from `started` has passed: the later deadline it gets
    /// instead, if the client's upload ran into it ([`UploadProgress`]), else `None`.
    fn later_deadline(&self, started: Instant) -> Option<Instant> {
        self.upload.as_ref()?.later_deadline(started, self.timeout)
    }
}

struct Attempt {
    in_flight: InFlight,
    started: Instant,
    report: Arc<OutcomeSink>,
}

/// A request that got a member after waiting: its call and the attempt's bookkeeping
/// (what [`Waiting`](super::Waiting) yields; opaque).
pub struct Granted<F> {
    pub(crate) fut: F,
    pub(crate) in_flight: InFlight,
    pub(crate) started: Instant,
    pub(crate) limit: Option<AttemptLimit>,
    pub(crate) report: Arc<OutcomeSink>,
}

impl<F> std::fmt::Debug for Granted<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Granted")
            .field("member", self.in_flight.member().id())
            .finish_non_exhaustive()
    }
}

impl<F, W> ResponseFuture<F, W> {
    pub(crate) fn queued(wait: W) -> Self {
        Self {
            kind: Kind::Queued {
                wait: Box::pin(wait),
            },
        }
    }

    pub(crate) fn attempt(
        fut: F,
        in_flight: InFlight,
        started: Instant,
        limit: Option<AttemptLimit>,
        report: Arc<OutcomeSink>,
    ) -> Self {
        Self {
            kind: Kind::Attempt {
                fut,
                limit,
                sleep: None,
                attempt: Some(Attempt {
                    in_flight,
                    started,
                    report,
                }),
            },
        }
    }

    pub(crate) fn failed(error: BalanceError) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<F, W> std::fmt::Debug for ResponseFuture<F, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

const POLLED_AFTER_READY: &str = "balance response future polled after completion";

impl<F, W, RB, E> Future for ResponseFuture<F, W>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: http_body::Body,
    E: Into<BoxError>,
    W: Future<Output = Result<Granted<F>, BoxError>>,
{
    type Output = Result<Response<ResponseBody<RB>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let KindProj::Queued { wait } = self.as_mut().project().kind.project() {
            let g = match wait.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(g)) => g,
            };
            self.as_mut().project().kind.set(Kind::Attempt {
                fut: g.fut,
                limit: g.limit,
                sleep: None,
                attempt: Some(Attempt {
                    in_flight: g.in_flight,
                    started: g.started,
                    report: g.report,
                }),
            });
        }
        match self.project().kind.project() {
            KindProj::Queued { .. } => Poll::Ready(Err(POLLED_AFTER_READY.into())),
            KindProj::Failed { error } => Poll::Ready(Err(error.take().map_or_else(
                || BoxError::from(POLLED_AFTER_READY),
                |e| Box::new(e) as BoxError,
            ))),
            KindProj::Attempt {
                fut,
                limit,
                sleep,
                attempt,
            } => {
                let result = match fut.poll(cx) {
                    Poll::Ready(r) => r.map_err(Into::into),
                    Poll::Pending => {
                        let (Some(l), Some(a)) = (limit.as_ref(), attempt.as_ref()) else {
                            return Poll::Pending;
                        };
                        let sleep = sleep.get_or_insert_with(|| {
                            task_timer::sleep_until(crate::deadline::deadline(a.started, l.timeout))
                        });
                        if Pin::new(&mut *sleep).poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        if let Some(later) = l.later_deadline(a.started) {
                            // the client was still uploading: the limit starts after it
                            sleep.reset(later);
                            if Pin::new(&mut *sleep).poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                        }
                        Err(
                            Box::new(UpstreamError::from_kind(UpstreamErrorKind::Timeout))
                                as BoxError,
                        )
                    }
                };
                let Some(Attempt {
                    in_flight,
                    started,
                    report,
                }) = attempt.take()
                else {
                    return Poll::Ready(Err(POLLED_AFTER_READY.into()));
                };
                Poll::Ready(finish(result, in_flight, started, report))
            }
        }
    }
}

/// An attempt's result: the outcome recorded on its member, the response tagged with who
/// served it and counted until its body ends, or the error with the member it failed on.
fn finish<RB: http_body::Body>(
    result: Result<Response<RB>, BoxError>,
    in_flight: InFlight,
    started: Instant,
    report: Arc<OutcomeSink>,
) -> Result<Response<ResponseBody<RB>>, BoxError> {
    let member = in_flight.member().clone();
    match result {
        Ok(res) => {
            let latency = started.elapsed();
            let status = res.status();
            // a body still to come settles the member's failure streak when it ends or
            // breaks off: a member whose every body is cut short is not a healthy one
            let mut pending = None;
            if report.failure_statuses.contains(status) {
                let kind = FailureKind::Status(status);
                let latency = Some(latency);
                report.record(&member, &Outcome::Failure { kind, latency });
            } else if res.body().is_end_stream() {
                report.record(&member, &Outcome::Success { latency });
            } else {
                report.record_head(&member, latency);
                pending = Some(report);
            }
            let (mut parts, body) = res.into_parts();
            parts.extensions.insert(ServedBy(member));
            Ok(Response::from_parts(
                parts,
                ResponseBody::new(body, in_flight, pending),
            ))
        }
        Err(e) => {
            drop(in_flight);
            let outcome = match find_upstream_error(&*e) {
                Some(u) => u
                    .failure_kind()
                    .map_or(Outcome::NotCounted, |kind| Outcome::Failure {
                        kind,
                        latency: None,
                    }),
                None => Outcome::Failure {
                    kind: FailureKind::Other,
                    latency: None,
                },
            };
            report.record(&member, &outcome);
            Err(Box::new(AttemptError::new(member, e)))
        }
    }
}
