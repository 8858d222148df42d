//! The failover future: attempts, backoff, deadline, and the final answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::body::{Replay, ReplayBody};
use super::error::{FailoverError, NotRetried};
use super::policy::{is_idempotent, FailoverConfig};
use super::Attempts;
use crate::balance::{AttemptError, AttemptTimeout, BalanceError, ServedBy};
use crate::error::find_in_chain;
use crate::registry::Member;
use crate::strategy::Tried;
use crate::upstream::{find_upstream_error, UpstreamErrorKind};
use crate::BoxError;

pin_project! {
    /// Response future of [`Failover`](super::Failover).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S::Future>,
        // boxed: only requests with a deadline pay for a timer
        deadline: Option<Pin<Box<Sleep>>>,
        svc: S,
        parts: Parts,
        replay: Replay<B>,
        attempts: usize,
        max_attempts: usize,
        // made by the first retry: boxed, as inline it made every request's future ~400
        // bytes bigger, copied at each move between layers
        retrying: Option<Box<Retrying<S::Response>>>,
        config: Arc<FailoverConfig>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Ready,
        Calling {
            #[pin]
            fut: F,
        },
        // boxed: only retries pay for a timer
        Backoff {
            sleep: Pin<Box<Sleep>>,
        },
    }
}

/// What a request being retried carries.
struct Retrying<R> {
    /// The members tried, which later attempts avoid.
    tried: Tried,
    /// The last failure, the answer if no later attempt does better.
    last: Option<Result<R, BoxError>>,
    /// The failures before `last`, oldest first, said for the error that ends the request.
    failures: Vec<String>,
    /// Members' refusals sent again ([`UpstreamErrorKind::Refused`]), at most
    /// [`REFUSALS_RESENT`] a request.
    refusals_resent: u8,
}

impl<R> Retrying<R> {
    fn boxed() -> Box<Self> {
        Box::new(Self {
            tried: Tried::new(),
            last: None,
            failures: Vec::new(),
            refusals_resent: 0,
        })
    }
}

impl<RB> Retrying<Response<RB>> {
    /// Notes the member `res` failed on: avoided by later attempts, or for a refusal sent
    /// again (and counted as a resend on it).
    fn failed_on(&mut self, res: &Result<Response<RB>, BoxError>, refusal: bool) {
        match failed_member(res) {
            Some(m) if refusal => {
                self.refusals_resent += 1;
                m.stats().metrics().note_resend();
            }
            Some(m) => {
                self.tried.insert(m);
            }
            None => {}
        }
    }

    /// Keeps `res` as the answer so far; the one it replaces is said in `failures`.
    fn keep(&mut self, res: Result<Response<RB>, BoxError>) {
        if let Some(old) = self.last.replace(res) {
            self.failures.push(describe(&old));
        }
    }
}

/// One failed attempt in a few words, for [`FailoverError::earlier`].
fn describe<RB>(res: &Result<Response<RB>, BoxError>) -> String {
    match res {
        Err(e) => crate::error::DisplayChain(&**e).to_string(),
        Ok(r) => match r.extensions().get::<ServedBy>() {
            Some(ServedBy(m)) => format!("member {} answered {}", m.id(), r.status()),
            None => format!("a member answered {}", r.status()),
        },
    }
}

/// Finishes the answer in place (a response moved by value through one more function was
/// ~140 instructions a request, `scripts/instructions-check.sh`): an error that is a
/// [`FailoverError`] gets the failures of the attempts before the last (a log line names
/// every member that failed, not only the last), and a response that took more than one
/// attempt is marked with their number (an access log writes them). The first attempt's
/// answer is left unmarked: an insert into a response's extensions was ~200 instructions on
/// every request, for a number a missing mark already says.
fn finish<RB>(
    out: &mut Result<Response<RB>, BoxError>,
    retrying: Option<&mut Box<Retrying<Response<RB>>>>,
    attempts: usize,
) {
    match out {
        Ok(r) => {
            if attempts > 1 {
                r.extensions_mut().insert(Attempts(attempts));
            }
            // an earlier failed answer kept is let go now (its member's connection with it)
            if let Some(r) = retrying {
                r.last = None;
            }
        }
        Err(e) => {
            let (Some(r), Some(f)) = (retrying, e.downcast_mut::<FailoverError>()) else {
                return;
            };
            let mut failures = std::mem::take(&mut r.failures);
            // an earlier failure still kept is not the answer: the answer came later
            if let Some(kept) = r.last.take() {
                failures.push(describe(&kept));
            }
            f.set_earlier(failures);
        }
    }
}

enum Verdict<R> {
    Done(Result<R, BoxError>),
    /// Worth another attempt; `unsent` when the request reached no member (a connect
    /// failure), so resending it adds no load to any member and spends no budget.
    Retry {
        res: Result<R, BoxError>,
        unsent: bool,
    },
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// A copy of a request's head.
fn copy_head(parts: &Parts) -> Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy.extensions = parts.extensions.clone();
    copy
}

/// Copies the request head for a retry, with the members tried so far.
fn attempt_request<B>(
    parts: &Parts,
    body: ReplayBody<B>,
    tried: Tried,
    config: &FailoverConfig,
) -> Request<ReplayBody<B>> {
    let mut req = Request::from_parts(copy_head(parts), body);
    // the balance layer reads a missing set as empty
    if !tried.is_empty() {
        req.extensions_mut().insert(tried);
    }
    if let Some(t) = config.per_try_timeout {
        req.extensions_mut().insert(AttemptTimeout(t));
    }
    req
}

/// The answer to give when failover stops for `reason`: a response is returned as it is,
/// marked with the reason; an error is wrapped in [`FailoverError`].
fn give_up<RB>(
    res: Result<Response<RB>, BoxError>,
    reason: NotRetried,
    attempts: usize,
) -> Result<Response<RB>, BoxError> {
    match res {
        Ok(mut r) => {
            r.extensions_mut().insert(reason);
            Ok(r)
        }
        Err(e) => Err(Box::new(FailoverError::new(reason, attempts, Some(e)))),
    }
}

impl<S, B, RB> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    pub(crate) fn start(
        mut svc: S,
        parts: Parts,
        replay: Replay<B>,
        max_attempts: usize,
        config: Arc<FailoverConfig>,
    ) -> Self {
        // the first attempt takes the request's own head, sized for what the layers below
        // add; the copy kept for retries is exactly sized (a `HeaderMap`'s clone has room for
        // no more fields), and growing it under the layers' inserts, twice, was ~530
        // instructions a request (callgrind's profile of the binary under load; with the
        // answers' room, plain 37,149 → 36,387 in `scripts/instructions-check.sh`)
        let kept = copy_head(&parts);
        let mut req = Request::from_parts(parts, replay.attempt());
        if let Some(t) = config.per_try_timeout {
            req.extensions_mut().insert(AttemptTimeout(t));
        }
        let fut = svc.call(req);
        let parts = kept;
        Self {
            state: State::Calling { fut },
            deadline: config.deadline.map(|d| {
                Box::pin(tokio::time::sleep_until(crate::deadline::deadline(
                    Instant::now(),
                    d,
                )))
            }),
            svc,
            parts,
            replay,
            attempts: 1,
            max_attempts,
            retrying: None,
            config,
        }
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(deadline) = this.deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    let attempts = *this.attempts;
                    let mut out = match this.retrying.as_mut().and_then(|r| r.last.take()) {
                        Some(res) => give_up(res, NotRetried::DeadlineExceeded, attempts),
                        None => Err(Box::new(FailoverError::new(
                            NotRetried::DeadlineExceeded,
                            attempts,
                            None,
                        )) as BoxError),
                    };
                    finish(&mut out, this.retrying.as_mut(), attempts);
                    return Poll::Ready(out);
                }
            }
            match this.state.as_mut().project() {
                StateProj::Ready => {
                    if let Err(e) = ready!(this.svc.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let tried = this.retrying.as_ref().map_or_else(Tried::new, |r| r.tried);
                    let req =
                        attempt_request(this.parts, this.replay.attempt(), tried, this.config);
                    let fut = this.svc.call(req);
                    *this.attempts += 1;
                    this.state.set(State::Calling { fut });
                }
                StateProj::Backoff { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Calling { fut } => {
                    let res = ready!(fut.poll(cx)).map_err(Into::into);
                    let attempts = *this.attempts;
                    let last = this.retrying.as_mut().map(|r| &mut r.last);
                    let verdict = judge(res, this.parts, this.replay, this.config, last, attempts);
                    match verdict {
                        Verdict::Done(mut out) => {
                            finish(&mut out, this.retrying.as_mut(), attempts);
                            return Poll::Ready(out);
                        }
                        Verdict::Retry { res, unsent } => {
                            // a member's refusal goes out again whatever maxattempts
                            // and the budget say, to any member, that one too: it was no
                            // attempt (a keep-alive race's resend is not one either)
                            let refusal = resends_refusal(&res, this.retrying.as_deref());
                            if refusal {
                                *this.max_attempts += 1;
                            }
                            if attempts >= *this.max_attempts {
                                let mut out = give_up(res, NotRetried::AttemptsExhausted, attempts);
                                finish(&mut out, this.retrying.as_mut(), attempts);
                                return Poll::Ready(out);
                            }
                            if !unsent && !this.config.budget.withdraw() {
                                let mut out = refused(this.config, res, attempts);
                                finish(&mut out, this.retrying.as_mut(), attempts);
                                return Poll::Ready(out);
                            }
                            let retrying = this.retrying.get_or_insert_with(Retrying::boxed);
                            retrying.failed_on(&res, refusal);
                            retrying.keep(res);
                            if refusal {
                                this.state.set(State::Ready);
                                continue;
                            }
                            let wait = retry_wait(this.config, attempts);
                            this.state.set(State::Backoff {
                                sleep: Box::pin(tokio::time::sleep(wait)),
                            });
                        }
                    }
                }
            }
        }
    }
}

/// The backoff before the next attempt, said in the request's span.
fn retry_wait(config: &FailoverConfig, attempts: usize) -> std::time::Duration {
    let wait = config.backoff_for(attempts);
    tracing::debug!(
        attempt = attempts + 1,
        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        "retrying on another member"
    );
    wait
}

/// A retry the budget refused: counted for the balancer and for the member that failed,
/// and that failure is the answer.
fn refused<RB>(
    config: &FailoverConfig,
    res: Result<Response<RB>, BoxError>,
    attempts: usize,
) -> Result<Response<RB>, BoxError> {
    config
        .refusals
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(m) = failed_member(&res) {
        m.stats().metrics().note_budget_refusal();
    }
    give_up(res, NotRetried::BudgetExhausted, attempts)
}

/// The member whose attempt gave `res`, when it is known.
fn failed_member<RB>(res: &Result<Response<RB>, BoxError>) -> Option<&Member> {
    match res {
        Ok(r) => r.extensions().get::<ServedBy>().map(|ServedBy(m)| &**m),
        Err(e) => e.downcast_ref::<AttemptError>().map(|a| &**a.member()),
    }
}

/// How often a request refused unprocessed goes out again beyond `maxattempts`: a member
/// closing its connections often with few streams refuses some requests twice in a row
/// (nginx with `keepalive_requests 100` and 4 streams, under load, refused 3 of 168,000
/// three times when only one resend was allowed); each refusal is proof nothing was done.
const REFUSALS_RESENT: u8 = 3;

/// Whether an attempt failed for a member's refusal to process it, and the request may go
/// out again for it.
fn resends_refusal<R>(res: &Result<R, BoxError>, retrying: Option<&Retrying<R>>) -> bool {
    let kind = res.as_ref().err().and_then(|e| find_upstream_error(&**e));
    kind.map(crate::upstream::UpstreamError::kind) == Some(UpstreamErrorKind::Refused)
        && retrying.is_none_or(|r| r.refusals_resent < REFUSALS_RESENT)
}
/// Decides whether one attempt's outcome is the answer or worth another attempt.
fn judge<B, RB>(
    res: Result<Response<RB>, BoxError>,
    parts: &Parts,
    replay: &Replay<B>,
    config: &FailoverConfig,
    last: Option<&mut Option<Result<Response<RB>, BoxError>>>,
    attempts: usize,
) -> Verdict<Response<RB>> {
    let may_resend = is_idempotent(&parts.method) || config.retry_non_idempotent;
    // Why a retry that is otherwise allowed cannot happen, if it cannot.
    let blocked = |resent_ok: bool| -> Option<NotRetried> {
        if replay.client_failed() {
            Some(NotRetried::ClientError)
        } else if !resent_ok {
            Some(NotRetried::NotIdempotent)
        } else if !replay.can_replay() {
            Some(NotRetried::BodyOverCap)
        } else {
            None
        }
    };
    match res {
        Ok(r) => {
            if !config.fail_on_status.contains(r.status()) {
                return Verdict::Done(Ok(r));
            }
            match blocked(may_resend) {
                Some(reason) => Verdict::Done(give_up(Ok(r), reason, attempts)),
                None => Verdict::Retry {
                    res: Ok(r),
                    unsent: false,
                },
            }
        }
        Err(e) => {
            if find_in_chain::<BalanceError>(&*e).is_some() {
                // no member left for this attempt: the previous failure is the answer
                return Verdict::Done(match last.and_then(Option::take) {
                    Some(prev) => give_up(prev, NotRetried::AttemptsExhausted, attempts - 1),
                    None => Err(e),
                });
            }
            let upstream = find_upstream_error(&*e).map(crate::upstream::UpstreamError::kind);
            let unsent = matches!(
                upstream,
                Some(
                    UpstreamErrorKind::Connect
                        | UpstreamErrorKind::Local
                        | UpstreamErrorKind::Refused
                )
            );
            let reason = match upstream {
                Some(UpstreamErrorKind::ClientBody) => Some(NotRetried::ClientError),
                Some(UpstreamErrorKind::Capacity) => Some(NotRetried::Capacity),
                // nothing was sent, or nothing of it processed: safe for every method
                Some(
                    UpstreamErrorKind::Connect
                    | UpstreamErrorKind::Local
                    | UpstreamErrorKind::Refused,
                ) => blocked(true),
                _ => blocked(may_resend),
            };
            match reason {
                Some(reason) => Verdict::Done(give_up(Err(e), reason, attempts)),
                None => Verdict::Retry {
                    res: Err(e),
                    unsent,
                },
            }
        }
    }
}
