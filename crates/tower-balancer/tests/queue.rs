//! Members with a limit on requests in flight, and the queue of requests waiting for room.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::spec;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::Semaphore;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{
    BalanceError, BalanceLayer, Picked, PinnedRoute, QueueSettings, ServedBy,
};
use tower_balancer::error::error_status;
use tower_balancer::registry::{MemberId, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer::BoxError;

type Body = Full<Bytes>;

/// A member side that counts what it holds, remembers the order requests reached it, and
/// answers each only when the test lets one through `gate`.
#[derive(Clone)]
struct Members {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    order: Arc<Mutex<Vec<(String, u32)>>>,
    gate: Arc<Semaphore>,
}

impl Default for Members {
    fn default() -> Self {
        Self {
            now: Arc::default(),
            peak: Arc::default(),
            order: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Members {
    fn service(
        &self,
    ) -> impl Service<
        Request<tower_balancer::balance::RequestBody<Body>>,
        Response = Response<Body>,
        Error = BoxError,
        Future = impl Send,
    > + Clone {
        let m = self.clone();
        service_fn(move |req: Request<_>| {
            let m = m.clone();
            async move {
                let member = req.extensions().get::<Picked>().unwrap().0.id().to_string();
                let seq: u32 = req.headers()["seq"].to_str().unwrap().parse().unwrap();
                let n = m.now.fetch_add(1, Ordering::SeqCst) + 1;
                m.peak.fetch_max(n, Ordering::SeqCst);
                m.order.lock().unwrap().push((member, seq));
                m.gate.acquire().await.unwrap().forget();
                m.now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        })
    }
}

fn request(seq: u32) -> Request<Body> {
    Request::builder()
        .header("seq", seq.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A request pinned to the member `to` by a sticky route.
fn pinned(seq: u32, to: &str) -> Request<Body> {
    let mut req = request(seq);
    req.extensions_mut()
        .insert(PinnedRoute::new(MemberId::new(to).unwrap()));
    req
}

fn limited(ids: &[(&str, u32)]) -> Registry {
    let r = Registry::new();
    for (id, max) in ids {
        r.insert(spec(id).max_in_flight(*max)).unwrap();
    }
    r
}

/// Sends `req` and reads the whole answer: which member served it, or the error.
async fn send<S>(svc: S, req: Request<Body>) -> Result<String, BoxError>
where
    S: Service<
        Request<Body>,
        Response = Response<tower_balancer::balance::ResponseBody<Body>>,
        Error = BoxError,
    >,
{
    let res = svc.oneshot(req).await?;
    let by = res
        .extensions()
        .get::<ServedBy>()
        .unwrap()
        .0
        .id()
        .to_string();
    res.into_body().collect().await?;
    Ok(by)
}

/// Lets the runtime run every task that can run (time is paused, so nothing times out).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_member_limited_to_4_never_holds_more_and_serves_the_queue_in_order() {
    let r = limited(&[("m0", 4)]);
    let members = Members::default();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(members.service());
    let mut tasks = Vec::new();
    for seq in 0..64 {
        tasks.push(tokio::spawn(send(svc.clone(), request(seq))));
        settle().await;
    }
    assert_eq!(members.now.load(Ordering::SeqCst), 4);
    assert_eq!(r.load_stats().queue().depth(), 60);
    for _ in 0..64 {
        members.gate.add_permits(1);
        settle().await;
        assert!(members.now.load(Ordering::SeqCst) <= 4);
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "m0");
    }
    assert_eq!(members.peak.load(Ordering::SeqCst), 4);
    let order: Vec<u32> = members.order.lock().unwrap().iter().map(|o| o.1).collect();
    assert_eq!(
        order,
        (0..64).collect::<Vec<_>>(),
        "served out of arrival order"
    );
    let q = r.load_stats().queue();
    assert_eq!((q.depth(), q.queued(), q.timed_out()), (0, 60, 0));
    assert_eq!(q.wait_times().count, 60);
    assert_eq!(r.load().get("m0").unwrap().stats().in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_the_queue_timeout_then_gets_503() {
    let r = limited(&[("m0", 1)]);
    let members = Members::default();
    let layer = BalanceLayer::new(r.clone(), RoundRobin::new())
        .queue(QueueSettings::new().timeout(Duration::from_secs(2)));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(members.service());
    let hung = tokio::spawn(send(svc.clone(), request(0)));
    settle().await;
    let started = tokio::time::Instant::now();
    let err = send(svc.clone(), request(1)).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        err.downcast_ref::<BalanceError>(),
        Some(&BalanceError::QueueTimeout(Duration::from_secs(2)))
    );
    assert_eq!(error_status(&*err), StatusCode::SERVICE_UNAVAILABLE);
    let q = r.load_stats().queue();
    assert_eq!((q.depth(), q.timed_out()), (0, 1));
    // the slot the timed-out request never took is still there for the next one
    members.gate.add_permits(2);
    assert_eq!(hung.await.unwrap().unwrap(), "m0");
    assert_eq!(send(svc, request(2)).await.unwrap(), "m0");
    assert_eq!(members.peak.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let r = limited(&[("m0", 1)]);
    let members = Members::default();
    let layer =
        BalanceLayer::new(r.clone(), RoundRobin::new()).queue(QueueSettings::new().length(2));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(members.service());
    let mut held = Vec::new();
    for seq in 0..3 {
        held.push(tokio::spawn(send(svc.clone(), request(seq))));
        settle().await;
    }
    let err = send(svc.clone(), request(3)).await.unwrap_err();
    let e = err.downcast_ref::<BalanceError>().unwrap();
    assert_eq!(e, &BalanceError::QueueFull);
    assert!(e.is_busy());
    assert_eq!(r.load_stats().queue().refused(), 1);
    members.gate.add_permits(3);
    for t in held {
        assert_eq!(t.await.unwrap().unwrap(), "m0");
    }
}

#[tokio::test(start_paused = true)]
async fn a_pinned_request_waits_for_its_member_while_others_go_elsewhere() {
    let r = limited(&[("a", 1), ("b", 1)]);
    let members = Members::default();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(members.service());
    let first = tokio::spawn(send(svc.clone(), pinned(0, "a")));
    settle().await;
    let waiting = tokio::spawn(send(svc.clone(), pinned(1, "a")));
    settle().await;
    assert_eq!(
        r.load_stats().queue().depth(),
        1,
        "b had room, yet the pinned request went on"
    );
    let other = tokio::spawn(send(svc.clone(), request(2)));
    settle().await;
    let seen: Vec<_> = members.order.lock().unwrap().clone();
    assert_eq!(seen, [("a".into(), 0), ("b".into(), 2)]);
    members.gate.add_permits(3);
    assert_eq!(first.await.unwrap().unwrap(), "a");
    assert_eq!(waiting.await.unwrap().unwrap(), "a");
    assert_eq!(other.await.unwrap().unwrap(), "b");
}

#[tokio::test(start_paused = true)]
async fn full_members_do_not_spill_into_the_next_set_and_a_raised_limit_lets_waiters_in() {
    let r = Registry::new();
    r.insert(spec("a").max_in_flight(1)).unwrap();
    r.insert(spec("backup").priority(1)).unwrap();
    let members = Members::default();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(members.service());
    let first = tokio::spawn(send(svc.clone(), request(0)));
    settle().await;
    let second = tokio::spawn(send(svc.clone(), request(1)));
    settle().await;
    assert_eq!(r.load_stats().queue().depth(), 1);
    assert_eq!(members.order.lock().unwrap().len(), 1);
    r.upsert(spec("a").max_in_flight(2)).unwrap();
    settle().await;
    assert_eq!(r.load_stats().queue().depth(), 0);
    assert_eq!(members.peak.load(Ordering::SeqCst), 2);
    members.gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap(), "a");
    assert_eq!(second.await.unwrap().unwrap(), "a");
}

#[tokio::test(start_paused = true)]
async fn a_removed_member_frees_no_slot_for_new_requests() {
    let r = limited(&[("a", 1), ("b", 1)]);
    let members = Members::default();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(members.service());
    // a's request reaches the member side first, so it is the first to finish
    let on_a = tokio::spawn(send(svc.clone(), pinned(0, "a")));
    settle().await;
    let on_b = tokio::spawn(send(svc.clone(), pinned(1, "b")));
    settle().await;
    let waiting = tokio::spawn(send(svc.clone(), request(2)));
    settle().await;
    r.remove("a").unwrap();
    // a's request finishes first: its slot must not carry the waiting request to a
    members.gate.add_permits(1);
    settle().await;
    assert_eq!(r.load_stats().queue().depth(), 1);
    members.gate.add_permits(2);
    assert_eq!(on_a.await.unwrap().unwrap(), "a");
    assert_eq!(on_b.await.unwrap().unwrap(), "b");
    assert_eq!(waiting.await.unwrap().unwrap(), "b");
}

#[tokio::test(start_paused = true)]
async fn members_without_a_limit_never_queue() {
    let r = Registry::new();
    r.insert(spec("a")).unwrap();
    let members = Members::default();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(members.service());
    let tasks: Vec<_> = (0..32)
        .map(|seq| tokio::spawn(send(svc.clone(), request(seq))))
        .collect();
    settle().await;
    assert_eq!(members.now.load(Ordering::SeqCst), 32);
    assert_eq!(r.load_stats().queue().queued(), 0);
    members.gate.add_permits(32);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_pinned_request_waiting_for_a_member_that_stops_serving_goes_elsewhere() {
    let r = limited(&[("a", 1), ("b", 1)]);
    let members = Members::default();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(members.service());
    let on_a = tokio::spawn(send(svc.clone(), pinned(0, "a")));
    settle().await;
    let waiting = tokio::spawn(send(svc.clone(), pinned(1, "a")));
    let mut strict = pinned(2, "a");
    strict
        .extensions_mut()
        .insert(PinnedRoute::new(MemberId::new("a").unwrap()).strict());
    let strict = tokio::spawn(send(svc.clone(), strict));
    settle().await;
    assert_eq!(r.load_stats().queue().depth(), 2);
    // the operator disables a: the session cannot stay there, so b takes the waiting
    // request at once; the strict one is answered at once, not after the queue timeout
    let started = tokio::time::Instant::now();
    r.set_state("a", tower_balancer::registry::AdminState::Disabled)
        .unwrap();
    settle().await;
    assert_eq!(r.load_stats().queue().depth(), 0);
    let err = strict.await.unwrap().unwrap_err();
    assert!(err.downcast_ref::<BalanceError>().is_some(), "{err}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    members.gate.add_permits(2);
    assert_eq!(waiting.await.unwrap().unwrap(), "b");
    assert_eq!(on_a.await.unwrap().unwrap(), "a");
}

#[tokio::test(start_paused = true)]
async fn a_queue_timeout_past_the_clock_waits_instead_of_panicking() {
    let r = limited(&[("m0", 1)]);
    let members = Members::default();
    let layer = BalanceLayer::new(r.clone(), RoundRobin::new())
        .queue(QueueSettings::new().timeout(Duration::MAX));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(members.service());
    let first = tokio::spawn(send(svc.clone(), request(0)));
    settle().await;
    let second = tokio::spawn(send(svc.clone(), request(1)));
    settle().await;
    assert_eq!(r.load_stats().queue().depth(), 1);
    members.gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap(), "m0");
    assert_eq!(second.await.unwrap().unwrap(), "m0");
}
