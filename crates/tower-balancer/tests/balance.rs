//! The balance layer end to end with in-process services.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{registry, spec};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{
    AttemptError, BalanceError, BalanceLayer, HeaderKey, Picked, PinnedRoute, ServedBy,
};
use tower_balancer::error::error_status;
use tower_balancer::outcome::{FailureKind, Outcome};
use tower_balancer::registry::{AdminState, Health, Member, MemberId, Registry};
use tower_balancer::strategy::{RingHash, RoundRobin, Tried};
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
use tower_balancer::BoxError;

type Body = Full<Bytes>;

/// Answers with the picked member's id as the body.
async fn echo_member<B>(req: Request<B>) -> Result<Response<Body>, Infallible> {
    let m = req.extensions().get::<Picked>().unwrap().0.clone();
    Ok(Response::new(Full::new(Bytes::from(m.id().to_string()))))
}

fn req() -> Request<Body> {
    Request::new(Full::new(Bytes::new()))
}

async fn served_by<S>(svc: &mut S, request: Request<Body>) -> String
where
    S: Service<
        Request<Body>,
        Response = Response<tower_balancer::balance::ResponseBody<Body>>,
        Error = BoxError,
    >,
{
    let res = svc.ready().await.unwrap().call(request).await.unwrap();
    let id = res
        .extensions()
        .get::<ServedBy>()
        .unwrap()
        .0
        .id()
        .to_string();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        id.as_bytes(),
        "the response extension and the member that answered differ"
    );
    id
}

#[tokio::test]
async fn requests_stay_in_flight_until_the_response_body_ends() {
    let r = registry(1);
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo_member));
    let res = svc.oneshot(req()).await.unwrap();
    let member = res.extensions().get::<ServedBy>().unwrap().0.clone();
    assert_eq!(member.stats().in_flight(), 1, "released at headers");
    assert_eq!(r.load_stats().in_flight(), 1);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"m0");
    assert_eq!(member.stats().in_flight(), 0);
    assert_eq!(r.load_stats().in_flight(), 0);
    let v = member.stats().view();
    assert_eq!(v.bytes_from_member, 2);
    assert_eq!(v.requests, 1);
}

#[tokio::test]
async fn a_dropped_response_releases_its_in_flight_count() {
    let r = registry(1);
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo_member));
    let res = svc.oneshot(req()).await.unwrap();
    let member = res.extensions().get::<ServedBy>().unwrap().0.clone();
    drop(res);
    assert_eq!(member.stats().in_flight(), 0);
}

#[tokio::test]
async fn no_eligible_member_fails_the_future_with_503_and_readiness_is_unaffected() {
    let r = Registry::new();
    let mut svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo_member));
    for _ in 0..3 {
        let err = svc.ready().await.unwrap().call(req()).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<BalanceError>(),
            Some(&BalanceError::NoEligibleMember)
        );
        assert_eq!(error_status(&*err), StatusCode::SERVICE_UNAVAILABLE);
    }
    r.insert(spec("late")).unwrap();
    assert_eq!(served_by(&mut svc, req()).await, "late");
}

#[tokio::test]
async fn removing_a_member_with_requests_in_flight_loses_and_double_counts_nothing() {
    let r = registry(2);
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo_member));
    let mut pending = Vec::new();
    for _ in 0..10 {
        pending.push(svc.clone().oneshot(req()).await.unwrap());
    }
    let removed = r.remove("m0").unwrap();
    assert_eq!(removed.stats().in_flight(), 5);
    for res in pending {
        let _ = res.into_body().collect().await.unwrap();
    }
    assert_eq!(removed.stats().in_flight(), 0);
    assert_eq!(removed.stats().view().requests, 5);
    assert_eq!(r.load_stats().in_flight(), 0);
    // new requests only reach the remaining member
    let mut svc = svc;
    for _ in 0..4 {
        assert_eq!(served_by(&mut svc, req()).await, "m1");
    }
}

fn pinned(route: &str) -> Request<Body> {
    let mut r = req();
    r.extensions_mut()
        .insert(PinnedRoute::new(MemberId::new(route).unwrap()));
    r
}

#[tokio::test]
async fn a_pinned_route_is_honoured_while_its_member_can_serve() {
    let r = registry(3);
    let mut svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo_member));
    for _ in 0..5 {
        assert_eq!(served_by(&mut svc, pinned("m2")).await, "m2");
    }
    // draining: no new sessions, but pinned ones are still served
    r.set_state("m2", AdminState::Draining).unwrap();
    assert_eq!(served_by(&mut svc, pinned("m2")).await, "m2");
    for _ in 0..6 {
        assert_ne!(served_by(&mut svc, req()).await, "m2");
    }
    // disabled or unhealthy: balanced elsewhere
    r.set_state("m2", AdminState::Disabled).unwrap();
    assert_ne!(served_by(&mut svc, pinned("m2")).await, "m2");
    r.set_state("m2", AdminState::Active).unwrap();
    r.set_health("m2", Health::Unhealthy).unwrap();
    assert_ne!(served_by(&mut svc, pinned("m2")).await, "m2");
    // an unknown route is balanced normally, never dialled
    let id = served_by(&mut svc, pinned("node9")).await;
    assert!(id == "m0" || id == "m1");
}

#[tokio::test]
async fn in_panic_mode_a_pin_holds_as_health_is_set_aside_for_every_member() {
    let r = registry(3);
    let mut svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo_member));
    // every member down (or none probed yet): requests are sent anyway, and a session's
    // own member is the one to try
    for id in ["m0", "m1", "m2"] {
        r.set_health(id, Health::Unhealthy).unwrap();
    }
    assert!(r.snapshot().is_panic());
    for _ in 0..6 {
        assert_eq!(served_by(&mut svc, pinned("m2")).await, "m2");
    }
    // a disabled member stays out, panic or not
    r.set_state("m2", AdminState::Disabled).unwrap();
    for _ in 0..4 {
        assert_ne!(served_by(&mut svc, pinned("m2")).await, "m2");
    }
}

#[tokio::test]
async fn a_strict_pin_to_a_member_that_cannot_serve_is_a_503() {
    let r = registry(2);
    r.set_state("m1", AdminState::Disabled).unwrap();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo_member));
    let mut request = req();
    request
        .extensions_mut()
        .insert(PinnedRoute::new(MemberId::new("m1").unwrap()).strict());
    let err = svc.oneshot(request).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<BalanceError>(),
        Some(BalanceError::PinnedUnavailable(id)) if id.as_str() == "m1"
    ));
    assert_eq!(error_status(&*err), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn members_in_the_tried_extension_are_skipped() {
    let r = registry(3);
    let mut svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(echo_member));
    let snap = r.snapshot();
    let mut tried = Tried::new();
    tried.insert(snap.get("m0").unwrap());
    tried.insert(snap.get("m2").unwrap());
    for _ in 0..5 {
        let mut request = req();
        request.extensions_mut().insert(tried);
        assert_eq!(served_by(&mut svc, request).await, "m1");
    }
}

type Seen = Arc<Mutex<Vec<(String, Outcome)>>>;

fn observed_layer(r: &Registry) -> (BalanceLayer<RoundRobin>, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let layer = BalanceLayer::new(r.clone(), RoundRobin::new()).observer(
        move |m: &Arc<Member>, o: &Outcome| sink.lock().unwrap().push((m.id().to_string(), *o)),
    );
    (layer, seen)
}

#[tokio::test]
async fn a_5xx_response_counts_against_the_member_and_a_404_does_not() {
    let r = registry(1);
    let (layer, seen) = observed_layer(&r);
    let status = Arc::new(AtomicUsize::new(503));
    let s = status.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |_req: Request<_>| {
            let code = u16::try_from(s.load(Ordering::Relaxed)).unwrap();
            async move {
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::from_u16(code).unwrap();
                Ok::<_, Infallible>(res)
            }
        }));
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    status.store(404, Ordering::Relaxed);
    let _ = svc.clone().oneshot(req()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(matches!(
        seen[0].1,
        Outcome::Failure {
            kind: FailureKind::Status(StatusCode::SERVICE_UNAVAILABLE),
            latency: Some(_)
        }
    ));
    assert!(matches!(seen[1].1, Outcome::Success { .. }));
    let m = r.load().get("m0").unwrap().clone();
    assert_eq!(m.stats().view().failures, 1);
    assert_eq!(m.stats().consecutive_failures(), 0);
}

#[tokio::test]
async fn a_body_read_to_its_last_frame_ends_the_failure_streak_as_hyper_reads_it() {
    // hyper's server stops polling a body once `is_end_stream` says it is over: the body
    // never yields its `None`, and its end must settle the streak all the same
    let r = registry(1);
    let status = Arc::new(AtomicUsize::new(503));
    let s = status.clone();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(move |_req: Request<_>| {
            let code = u16::try_from(s.load(Ordering::Relaxed)).unwrap();
            async move {
                let mut res = Response::new(Full::new(Bytes::from_static(b"answer")));
                *res.status_mut() = StatusCode::from_u16(code).unwrap();
                Ok::<_, Infallible>(res)
            }
        }));
    let m = r.load().get("m0").unwrap().clone();
    let _ = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(m.stats().consecutive_failures(), 1);
    status.store(200, Ordering::Relaxed);
    let mut body = svc.clone().oneshot(req()).await.unwrap().into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "answer");
    assert!(http_body::Body::is_end_stream(&body));
    assert_eq!(
        m.stats().consecutive_failures(),
        0,
        "the whole answer ended no streak"
    );
    assert_eq!(m.stats().in_flight(), 0);
    drop(body);
    assert_eq!(m.stats().consecutive_failures(), 0);
}

#[tokio::test]
async fn upstream_errors_are_classified_and_carry_the_member() {
    let r = registry(1);
    let (layer, seen) = observed_layer(&r);
    let kind = Arc::new(Mutex::new(UpstreamErrorKind::Connect));
    let k = kind.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |_req: Request<_>| {
            let kind = *k.lock().unwrap();
            async move { Err::<Response<Body>, _>(UpstreamError::from_kind(kind)) }
        }));
    let err = svc.clone().oneshot(req()).await.unwrap_err();
    let attempt = err.downcast_ref::<AttemptError>().unwrap();
    assert_eq!(attempt.member().id().as_str(), "m0");
    assert_eq!(error_status(&*err), StatusCode::BAD_GATEWAY);

    *kind.lock().unwrap() = UpstreamErrorKind::ClientBody;
    let err = svc.clone().oneshot(req()).await.unwrap_err();
    assert_eq!(error_status(&*err), StatusCode::BAD_REQUEST);

    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].1,
        Outcome::Failure {
            kind: FailureKind::Connect,
            latency: None
        }
    );
    assert_eq!(
        seen[1].1,
        Outcome::NotCounted,
        "a client's body failure counted against the member"
    );
    let m = r.load().get("m0").unwrap().clone();
    assert_eq!(m.stats().consecutive_failures(), 1);
    assert_eq!(m.stats().in_flight(), 0);
}

#[tokio::test]
async fn request_bytes_are_counted_toward_the_member() {
    let r = registry(1);
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(service_fn(
            |req: Request<tower_balancer::balance::RequestBody<Body>>| async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                Ok::<_, BoxError>(Response::new(Full::new(body)))
            },
        ));
    let res = svc
        .oneshot(Request::new(Full::new(Bytes::from_static(b"hello"))))
        .await
        .unwrap();
    let m = res.extensions().get::<ServedBy>().unwrap().0.clone();
    let _ = res.into_body().collect().await.unwrap();
    let v = m.stats().view();
    assert_eq!((v.bytes_to_member, v.bytes_from_member), (5, 5));
}

#[tokio::test]
async fn a_hash_key_sends_each_key_to_one_member() {
    let r = registry(5);
    let mut svc = ServiceBuilder::new()
        .layer(
            BalanceLayer::new(r.clone(), RingHash::new())
                .hash_key(HeaderKey::new(http::HeaderName::from_static("x-user"))),
        )
        .service(service_fn(echo_member));
    for user in ["alice", "bob", "carol", "dave"] {
        let keyed = || {
            let mut q = req();
            q.headers_mut().insert("x-user", user.parse().unwrap());
            q
        };
        let first = served_by(&mut svc, keyed()).await;
        for _ in 0..5 {
            assert_eq!(served_by(&mut svc, keyed()).await, first);
        }
    }
}
