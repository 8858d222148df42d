//! The failover layer over the balance layer, with in-process members and paused time.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::registry;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, FailureStatuses, Picked, RequestBody, ResponseBody};
use tower_balancer::error::error_status;
use tower_balancer::failover::{
    Attempts, FailoverConfig, FailoverError, FailoverLayer, NotRetried, ReplayBody,
};
use tower_balancer::registry::Registry;
use tower_balancer::strategy::RoundRobin;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
use tower_balancer::BoxError;

type Body = Full<Bytes>;
type InnerReq = Request<RequestBody<ReplayBody<Body>>>;

/// How each member behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// echo the body
    Ok,
    /// refuse the connection: nothing sent
    Refuse,
    /// read the body, then break the connection
    ResetAfterRead,
    /// answer 503
    Unavailable,
    /// never answer
    Hang,
}

#[derive(Clone, Default)]
struct Cluster {
    modes: Arc<Mutex<Vec<Mode>>>,
    /// (member, body) of every attempt that reached a member
    ledger: Arc<Mutex<Vec<(String, Bytes)>>>,
    attempts: Arc<AtomicUsize>,
}

impl Cluster {
    fn new(modes: &[Mode]) -> Self {
        Self {
            modes: Arc::new(Mutex::new(modes.to_vec())),
            ..Self::default()
        }
    }

    fn member_service(
        &self,
    ) -> impl Service<InnerReq, Response = Response<Body>, Error = UpstreamError, Future = impl Send>
           + Clone {
        let this = self.clone();
        service_fn(move |req: InnerReq| {
            let this = this.clone();
            async move {
                this.attempts.fetch_add(1, Ordering::Relaxed);
                let m = req.extensions().get::<Picked>().unwrap().0.clone();
                let idx: usize = m.id().as_str()[1..].parse().unwrap();
                let mode = this.modes.lock().unwrap()[idx];
                if mode == Mode::Refuse {
                    return Err(UpstreamError::from_kind(UpstreamErrorKind::Connect));
                }
                if mode == Mode::Hang {
                    std::future::pending::<()>().await;
                }
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| UpstreamError::new(UpstreamErrorKind::ClientBody, e))?
                    .to_bytes();
                this.ledger
                    .lock()
                    .unwrap()
                    .push((m.id().to_string(), body.clone()));
                match mode {
                    Mode::ResetAfterRead => Err(UpstreamError::from_kind(UpstreamErrorKind::Reset)),
                    Mode::Unavailable => {
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        Ok(r)
                    }
                    _ => Ok(Response::new(Full::new(body))),
                }
            }
        })
    }
}

fn stack(
    r: &Registry,
    cluster: &Cluster,
    config: FailoverConfig,
) -> impl Service<Request<Body>, Response = Response<ResponseBody<Body>>, Error = BoxError> + Clone
{
    ServiceBuilder::new()
        .layer(FailoverLayer::new(r.clone(), config))
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(cluster.member_service())
}

fn req(method: Method, body: &'static [u8]) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri("/")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

fn no_backoff() -> FailoverConfig {
    FailoverConfig::default().backoff(Duration::ZERO, Duration::ZERO)
}

#[tokio::test]
async fn a_refused_connection_is_retried_for_a_post_with_its_body() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::Refuse, Mode::Ok]);
    let svc = stack(&r, &cluster, no_backoff());
    for _ in 0..6 {
        let res = svc
            .clone()
            .oneshot(req(Method::POST, b"user=admin&pw=x"))
            .await
            .unwrap();
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "user=admin&pw=x"
        );
    }
    let ledger = cluster.ledger.lock().unwrap();
    assert_eq!(
        ledger.len(),
        6,
        "every POST reached exactly one member once"
    );
    assert!(ledger.iter().all(|(m, _)| m == "m1"));
}

#[tokio::test]
async fn a_post_that_may_have_reached_a_member_is_not_retried() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::ResetAfterRead, Mode::ResetAfterRead]);
    let svc = stack(&r, &cluster, no_backoff());
    let err = svc.oneshot(req(Method::POST, b"pay=1")).await.unwrap_err();
    let f = err.downcast_ref::<FailoverError>().unwrap();
    assert_eq!(f.reason(), NotRetried::NotIdempotent);
    assert_eq!(error_status(&*err), StatusCode::BAD_GATEWAY);
    assert_eq!(
        cluster.ledger.lock().unwrap().len(),
        1,
        "the POST was sent twice"
    );
}

#[tokio::test]
async fn a_get_that_broke_after_sending_is_retried_elsewhere() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::ResetAfterRead, Mode::Ok]);
    let svc = stack(&r, &cluster, no_backoff());
    let mut marks = Vec::new();
    for _ in 0..4 {
        let res = svc.clone().oneshot(req(Method::GET, b"")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        marks.push(res.extensions().get::<Attempts>().copied());
    }
    // the requests that met the broken member first took two attempts, and say so
    assert!(
        marks.iter().all(|m| matches!(m, None | Some(Attempts(2)))),
        "{marks:?}"
    );
    assert!(marks.contains(&Some(Attempts(2))), "{marks:?}");
    // a first attempt's answer is left unmarked
    *cluster.modes.lock().unwrap() = vec![Mode::Ok; 2];
    let res = svc.oneshot(req(Method::GET, b"")).await.unwrap();
    assert_eq!(res.extensions().get::<Attempts>(), None);
}

#[tokio::test]
async fn opting_in_retries_non_idempotent_methods() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::ResetAfterRead, Mode::Ok]);
    let svc = stack(&r, &cluster, no_backoff().retry_non_idempotent(true));
    for _ in 0..4 {
        let res = svc.clone().oneshot(req(Method::POST, b"x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn fail_on_status_retries_idempotent_requests_and_returns_the_last_answer() {
    let r = registry(3);
    let cluster = Cluster::new(&[Mode::Unavailable, Mode::Unavailable, Mode::Ok]);
    // a budget roomy enough for this test's few requests, each retried twice
    let cfg = no_backoff()
        .fail_on_status(FailureStatuses::none().with(StatusCode::SERVICE_UNAVAILABLE))
        .budget(Duration::from_secs(10), 100, 0.2);
    let svc = stack(&r, &cluster, cfg.clone());
    for _ in 0..3 {
        let res = svc.clone().oneshot(req(Method::GET, b"")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // every member down: the last member's own 503 is the answer, marked
    *cluster.modes.lock().unwrap() = vec![Mode::Unavailable; 3];
    let res = svc.oneshot(req(Method::GET, b"")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.extensions().get::<NotRetried>(),
        Some(&NotRetried::AttemptsExhausted)
    );
}

#[tokio::test]
async fn a_body_over_the_cap_is_not_retried_once_sent_and_says_so() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::ResetAfterRead, Mode::ResetAfterRead]);
    let svc = stack(&r, &cluster, no_backoff().replay_cap(8));
    let err = svc
        .oneshot(req(Method::PUT, b"0123456789"))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<FailoverError>().unwrap().reason(),
        NotRetried::BodyOverCap
    );
    assert_eq!(cluster.ledger.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_body_over_the_cap_is_still_retried_after_a_connect_failure() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::Refuse, Mode::Ok]);
    let svc = stack(&r, &cluster, no_backoff().replay_cap(8));
    for _ in 0..2 {
        let res = svc
            .clone()
            .oneshot(req(Method::POST, b"0123456789"))
            .await
            .unwrap();
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "0123456789"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_member_times_out_per_try_and_the_next_member_answers() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::Hang, Mode::Ok]);
    let svc = stack(
        &r,
        &cluster,
        no_backoff().per_try_timeout(Duration::from_secs(2)),
    );
    for _ in 0..4 {
        let start = tokio::time::Instant::now();
        let res = svc.clone().oneshot(req(Method::GET, b"")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // at most one per-try timeout, then the other member
        assert!(
            start.elapsed() <= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    let m0 = r.load().get("m0").unwrap().clone();
    assert_eq!(
        m0.stats().view().last_failure,
        Some(tower_balancer::outcome::FailureKind::Timeout)
    );
    assert_eq!(m0.stats().in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_overall_deadline_answers_504() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::Hang, Mode::Hang]);
    let svc = stack(&r, &cluster, no_backoff().deadline(Duration::from_secs(5)));
    let start = tokio::time::Instant::now();
    let err = svc.oneshot(req(Method::GET, b"")).await.unwrap_err();
    assert_eq!(error_status(&*err), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_between_attempts_within_its_bounds() {
    let r = registry(3);
    let cluster = Cluster::new(&[Mode::Refuse, Mode::Refuse, Mode::Ok]);
    let cfg =
        FailoverConfig::default().backoff(Duration::from_millis(100), Duration::from_millis(150));
    let svc = stack(&r, &cluster, cfg);
    let start = tokio::time::Instant::now();
    let _ = svc.oneshot(req(Method::GET, b"")).await.unwrap();
    // at most 100 ms then at most 150 ms (200 ms capped)
    assert!(
        start.elapsed() <= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
}

/// R4: with every member answering 503, attempts stay within 1.2 × requests + 10/s and the
/// budget's 10 s reserve.
#[tokio::test(start_paused = true)]
async fn a_failing_cluster_gets_no_retry_storm() {
    let r = registry(4);
    let cluster = Cluster::new(&[Mode::Unavailable; 4]);
    let cfg =
        no_backoff().fail_on_status(FailureStatuses::none().with(StatusCode::SERVICE_UNAVAILABLE));
    let counts = cfg.clone();
    let svc = stack(&r, &cluster, cfg);
    let requests = 2_000usize;
    let seconds = 20u64;
    for i in 0..requests {
        let res = svc.clone().oneshot(req(Method::GET, b"")).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        // spread the requests evenly over the run
        if i % (requests / usize::try_from(seconds * 10).unwrap()) == 0 {
            tokio::time::advance(Duration::from_millis(100)).await;
        }
    }
    let attempts = cluster.attempts.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    let limit = 1.2 * requests as f64 + 10.0 * (seconds + 10) as f64;
    #[allow(clippy::cast_precision_loss)]
    let got = attempts as f64;
    assert!(
        got <= limit,
        "{attempts} attempts for {requests} requests (limit {limit})"
    );
    assert!(
        attempts > requests,
        "no retry at all: the budget never allowed one"
    );
    // each refusal is counted once, on the member whose failure the client got
    let refused = counts.budget_refusals();
    let by_member: u64 = r
        .load()
        .members()
        .iter()
        .map(|m| m.stats().metrics().budget_refusals())
        .sum();
    assert!(refused > 0);
    assert_eq!(by_member, refused);
}

#[tokio::test]
async fn with_one_member_nothing_is_retried() {
    let r = registry(1);
    let cluster = Cluster::new(&[Mode::Refuse]);
    let svc = stack(&r, &cluster, no_backoff());
    let err = svc.oneshot(req(Method::GET, b"")).await.unwrap_err();
    assert_eq!(error_status(&*err), StatusCode::BAD_GATEWAY);
    assert_eq!(cluster.attempts.load(Ordering::Relaxed), 1);
}

/// The error that ends a request names every member that failed it, not only the last (the
/// log line of a request that failed on two members named one). Round robin starts at a
/// random member, so the order is not fixed.
#[tokio::test]
async fn the_final_error_names_every_member_tried() {
    let r = registry(3);
    let cluster = Cluster::new(&[Mode::Refuse, Mode::ResetAfterRead, Mode::Refuse]);
    let svc = stack(&r, &cluster, no_backoff());
    let err = svc.oneshot(req(Method::GET, b"")).await.unwrap_err();
    let f = err.downcast_ref::<FailoverError>().unwrap();
    assert_eq!(f.attempts(), 3);
    assert_eq!(f.earlier().len(), 2, "{:?}", f.earlier());
    let line = tower_balancer::error::DisplayChain(&*err).to_string();
    // each member once: the last failure is the cause, not among the earlier ones too
    for m in ["m0", "m1", "m2"] {
        assert_eq!(line.matches(&format!("member {m} ")).count(), 1, "{line}");
    }

    // an answer given up on for its status is named by the member and status
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::Unavailable, Mode::Refuse]);
    let cfg =
        no_backoff().fail_on_status(FailureStatuses::none().with(StatusCode::SERVICE_UNAVAILABLE));
    let svc = stack(&r, &cluster, cfg);
    let mut errors = 0;
    for _ in 0..10 {
        // m0 first: its 503, then m1's refusal, the error; m1 first: m0's 503 is the answer
        if let Err(err) = svc.clone().oneshot(req(Method::GET, b"")).await {
            let f = err.downcast_ref::<FailoverError>().unwrap();
            assert_eq!(f.earlier(), ["member m0 answered 503 Service Unavailable"]);
            errors += 1;
        }
    }
    assert!(errors > 0, "no request tried m0 first");
}

#[tokio::test]
async fn a_client_body_that_fails_is_not_retried_and_not_blamed_on_the_member() {
    use http_body::Frame;
    use http_body_util::StreamBody;
    let r = registry(2);
    let svc = ServiceBuilder::new()
        .layer(FailoverLayer::new(r.clone(), no_backoff()))
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(
            |req: Request<RequestBody<ReplayBody<_>>>| async move {
                req.into_body()
                    .collect()
                    .await
                    .map_err(|e| UpstreamError::new(UpstreamErrorKind::ClientBody, e))?;
                Ok::<_, UpstreamError>(Response::new(Full::new(Bytes::new())))
            },
        ));
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"part"))),
        Err(std::io::Error::other("client disconnected")),
    ];
    let body = StreamBody::new(Frames(frames.into()));
    let err = svc
        .oneshot(Request::post("/").body(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<FailoverError>().unwrap().reason(),
        NotRetried::ClientError
    );
    let snap = r.load();
    for m in snap.members() {
        assert_eq!(
            m.stats().view().failures,
            0,
            "the client's failure counted against {}",
            m.id()
        );
    }
}

struct Frames(std::collections::VecDeque<Result<http_body::Frame<Bytes>, std::io::Error>>);
impl futures_core::Stream for Frames {
    type Item = Result<http_body::Frame<Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front())
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_mid_attempt_stops_failover_and_frees_the_member() {
    let r = registry(2);
    let cluster = Cluster::new(&[Mode::Hang, Mode::Hang]);
    let svc = stack(
        &r,
        &cluster,
        no_backoff().per_try_timeout(Duration::from_secs(1)),
    );
    let pending = svc.oneshot(req(Method::GET, b""));
    // the client disconnects after 300 ms: its request future is dropped
    let _ = tokio::time::timeout(Duration::from_millis(300), pending).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        cluster.attempts.load(Ordering::Relaxed),
        1,
        "an attempt was made for a gone client"
    );
    let snap = r.load();
    for m in snap.members() {
        assert_eq!(m.stats().in_flight(), 0);
        assert_eq!(
            m.stats().view().failures,
            0,
            "the client's disconnect counted against {}",
            m.id()
        );
    }
}

#[tokio::test]
async fn the_first_attempt_gets_the_request_head_itself_and_a_retry_a_whole_copy() {
    // the first attempt takes the head with the room the server made for the fields the
    // layers below add (a copy's fields have room for none: each insert would grow it): the
    // very fields the request came with, at the same place in memory; a retry gets a copy
    // with every field and extension of the original
    #[derive(Clone, Debug, PartialEq)]
    struct Tag(u32);
    let r = registry(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = ServiceBuilder::new()
        .layer(FailoverLayer::new(r.clone(), no_backoff()))
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(move |req: InnerReq| {
            let log = log.clone();
            async move {
                let mut log = log.lock().unwrap();
                let host = req.headers().get("host").unwrap();
                log.push((
                    std::ptr::from_ref(host) as usize,
                    req.headers().get_all("x-two").iter().count(),
                    req.extensions().get::<Tag>().cloned(),
                ));
                if log.len() == 1 {
                    return Err::<Response<Body>, BoxError>(Box::new(UpstreamError::new(
                        UpstreamErrorKind::Connect,
                        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                    )));
                }
                Ok(Response::new(Body::default()))
            }
        }));
    let mut request = Request::new(Body::default());
    let headers = request.headers_mut();
    headers.insert("host", "a.test".parse().unwrap());
    headers.append("x-two", "1".parse().unwrap());
    headers.append("x-two", "2".parse().unwrap());
    let host = std::ptr::from_ref(request.headers().get("host").unwrap()) as usize;
    request.extensions_mut().insert(Tag(7));
    let res = svc.oneshot(request).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one retry: {seen:?}");
    assert_eq!(
        seen[0].0, host,
        "the first attempt has the request's own fields"
    );
    assert_ne!(seen[1].0, host, "a retry has a copy");
    for (_, twos, tag) in seen.iter() {
        assert_eq!((*twos, tag.clone()), (2, Some(Tag(7))), "{seen:?}");
    }
}
