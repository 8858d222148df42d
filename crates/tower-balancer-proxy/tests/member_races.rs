//! Keep-alive races on the member client's pooled connections, against a raw member on
//! 127.0.0.1: a member closing a reused connection with no answer (or a `408`) as a request
//! arrives has the idempotent request sent again, once, on a new connection, and counted;
//! one that held the request past the race's window has failed it; a request that may not
//! be resent never is. Every test is bounded by a timeout.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;
use tower_balancer::balance::SentTo;
use tower_balancer::client::ClientAddr;
use tower_balancer_proxy::forward::ForwardConfig;

#[path = "raw_member/mod.rs"]
mod raw_member;

use raw_member::{
    balancer, balancer_and_registry, get, get_request, raw_member, resends, Behaviour,
};

#[tokio::test]
async fn an_idempotent_request_the_member_drops_on_a_pooled_connection_goes_out_again() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (addr, counts) = raw_member(Behaviour::Lazy(Duration::from_millis(150))).await;
        let svc = balancer(addr, ForwardConfig::new());
        for _ in 0..4 {
            assert_eq!(get(svc.clone()).await, "ok");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // each pooled connection was dropped under a request, which went out on a new one
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 4);
        // a POST (even without a body) may have been acted on: not sent twice
        assert_eq!(get(svc.clone()).await, "ok");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut post = Request::post("/").body(Full::new(Bytes::new())).unwrap();
        post.extensions_mut()
            .insert(ClientAddr("127.0.0.1:1".parse().unwrap()));
        assert!(svc.clone().oneshot(post).await.is_err());
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 5);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_request_the_member_holds_then_drops_on_a_pooled_connection_is_its_failure() {
    tokio::time::timeout(Duration::from_secs(20), async {
        // held past the race's window (100 ms): the member had the request and failed it
        let (addr, counts) = raw_member(Behaviour::Hold(Duration::from_millis(300))).await;
        let (svc, r) = balancer_and_registry(addr, ForwardConfig::new());
        assert_eq!(get(svc.clone()).await, "ok");
        let again = get_request();
        let e = svc.clone().oneshot(again).await.unwrap_err();
        assert!(
            tower_balancer::error::find_in_chain::<tower_balancer::upstream::UpstreamError>(&*e)
                .is_some_and(|u| u.kind() == tower_balancer::upstream::UpstreamErrorKind::Reset),
            "{e:?}"
        );
        // not sent again behind failover's back
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(resends(&r), 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_request_dropped_at_once_on_a_pooled_connection_goes_out_again_once_and_is_counted() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (addr, counts) = raw_member(Behaviour::Hold(Duration::ZERO)).await;
        let (svc, r) = balancer_and_registry(addr, ForwardConfig::new());
        assert_eq!(get(svc.clone()).await, "ok");
        let mut again = get_request();
        let sent = SentTo::new();
        again.extensions_mut().insert(sent.clone());
        let res = svc.clone().oneshot(again).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // the request counts both sends, for its log line
        assert_eq!(sent.count(), 2);
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(resends(&r), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_408_racing_a_request_on_a_pooled_connection_sends_it_again_and_a_later_one_is_the_answer(
) {
    tokio::time::timeout(Duration::from_secs(20), async {
        // at once: the member's keep-alive timeout, answered as browsers do (sent again)
        let (addr, counts) = raw_member(Behaviour::TimedOut(Duration::ZERO)).await;
        let (svc, r) = balancer_and_registry(addr, ForwardConfig::new());
        assert_eq!(get(svc.clone()).await, "ok");
        assert_eq!(get(svc.clone()).await, "ok");
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(resends(&r), 1);
        // after the race's window: the member's answer to the request, passed on
        let (addr, counts) = raw_member(Behaviour::TimedOut(Duration::from_millis(300))).await;
        let (svc, r) = balancer_and_registry(addr, ForwardConfig::new());
        assert_eq!(get(svc.clone()).await, "ok");
        let again = get_request();
        let res = svc.clone().oneshot(again).await.unwrap();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(resends(&r), 0);
    })
    .await
    .unwrap();
}
