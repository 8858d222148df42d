//! The per-try limit with a client that uploads slowly: it counts from the end of the
//! upload, so a healthy member is neither timed out nor blamed while the client is still
//! sending, and a member that hangs after the upload still costs one limit. Paused time.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::registry;
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, RequestBody, ResponseBody};
use tower_balancer::failover::{FailoverConfig, FailoverLayer, ReplayBody};
use tower_balancer::strategy::RoundRobin;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
use tower_balancer::BoxError;

const S: Duration = Duration::from_secs(1);

/// A request body that sends one byte after each of its gaps.
struct Trickle {
    gaps: VecDeque<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Trickle {
    fn new(gap: Duration, bytes: usize) -> Self {
        Self {
            gaps: std::iter::repeat_n(gap, bytes).collect(),
            sleep: None,
        }
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(gap) = self.gaps.front().copied() else {
            return Poll::Ready(None);
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
        ready!(sleep.as_mut().poll(cx));
        self.sleep = None;
        self.gaps.pop_front();
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
    }

    fn is_end_stream(&self) -> bool {
        self.gaps.is_empty()
    }
}

/// How the member behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Member {
    /// reads the whole body and answers how much it got
    Answers,
    /// reads the whole body and never answers
    HangsAfterBody,
    /// reads three bytes of it, then neither reads more nor answers
    StopsReading,
}

async fn call(
    member: Member,
    body: Trickle,
    per_try: Duration,
) -> (
    Result<Response<ResponseBody<Full<Bytes>>>, BoxError>,
    Duration,
    tower_balancer::registry::Registry,
) {
    let r = registry(1);
    let member = service_fn(
        move |req: Request<RequestBody<ReplayBody<Trickle>>>| async move {
            let mut body = req.into_body();
            if member == Member::StopsReading {
                for _ in 0..3 {
                    let _ = body.frame().await;
                }
                std::future::pending::<()>().await;
            }
            let got = body
                .collect()
                .await
                .map_err(|e| UpstreamError::new(UpstreamErrorKind::ClientBody, e))?
                .to_bytes();
            if member == Member::HangsAfterBody {
                std::future::pending::<()>().await;
            }
            Ok::<_, UpstreamError>(Response::new(Full::new(Bytes::from(got.len().to_string()))))
        },
    );
    let svc = ServiceBuilder::new()
        .layer(FailoverLayer::new(
            r.clone(),
            FailoverConfig::default()
                .backoff(Duration::ZERO, Duration::ZERO)
                .per_try_timeout(per_try),
        ))
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(member);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/upload")
        .body(body)
        .unwrap();
    let start = Instant::now();
    let res = svc.oneshot(req).await;
    (res, start.elapsed(), r)
}

#[tokio::test(start_paused = true)]
async fn an_upload_longer_than_the_limit_reaches_a_healthy_member_and_is_answered() {
    // ten bytes 300 ms apart: 3 s of upload, three times the 1 s limit
    let (res, took, r) = call(Member::Answers, Trickle::new(S * 3 / 10, 10), S).await;
    let res = res.unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "10");
    assert_eq!(took, S * 3);
    let snap = r.load();
    let m = &snap.members()[0];
    assert_eq!(
        m.stats().view().failures,
        0,
        "the slow client was blamed on the member"
    );
}

#[tokio::test(start_paused = true)]
async fn a_member_that_hangs_after_a_slow_upload_costs_one_limit_from_its_end() {
    let (res, took, r) = call(Member::HangsAfterBody, Trickle::new(S * 3 / 10, 10), S).await;
    let err = res.unwrap_err();
    let up = tower_balancer::upstream::find_upstream_error(&*err).unwrap();
    assert_eq!(up.kind(), UpstreamErrorKind::Timeout);
    // the upload ends at 3 s; the member then has its whole limit
    assert_eq!(took, S * 4);
    assert_eq!(r.load().members()[0].stats().view().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hung_member_with_a_quick_body_still_times_out_at_the_limit() {
    let (res, took, _) = call(Member::HangsAfterBody, Trickle::new(Duration::ZERO, 3), S).await;
    assert!(res.is_err());
    assert_eq!(took, S);
}

#[tokio::test(start_paused = true)]
async fn a_member_that_stops_reading_the_body_times_out_a_limit_after_its_last_read() {
    // it reads the bytes of 0.3, 0.6 and 0.9 s and then nothing: the client is not the
    // one holding the attempt up
    let (res, took, _) = call(Member::StopsReading, Trickle::new(S * 3 / 10, 10), S).await;
    let err = res.unwrap_err();
    let up = tower_balancer::upstream::find_upstream_error(&*err).unwrap();
    assert_eq!(up.kind(), UpstreamErrorKind::Timeout);
    assert_eq!(took, S * 19 / 10);
}

#[tokio::test(start_paused = true)]
async fn gaps_in_the_upload_longer_than_the_limit_are_the_clients_not_the_members() {
    // three bytes 1.5 s apart against a 1 s limit: the member waits on the client each time
    let (res, took, r) = call(Member::Answers, Trickle::new(S * 3 / 2, 3), S).await;
    assert_eq!(
        res.unwrap().into_body().collect().await.unwrap().to_bytes(),
        "3"
    );
    assert_eq!(took, S * 9 / 2);
    assert_eq!(r.load().members()[0].stats().view().failures, 0);
}
