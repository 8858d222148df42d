//! The forwarder's member connections against a raw member on 127.0.0.1 that counts them:
//! reused while open, never used once the member closed them while idle (the request goes
//! out on a new one, without an error), and closed by the balancer once idle past the
//! timeout. Every test is bounded by a timeout.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, RequestBody};
use tower_balancer::client::ClientAddr;
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer_proxy::forward::ForwardConfig;

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    closed_by_peer: AtomicUsize,
}

/// A member speaking just enough HTTP/1.1: a `200 ok` with a length to each GET, keeping the
/// connection (no `Connection: close`), or closing it without a word after `answers` answers.
async fn raw_member(answers: Option<usize>) -> (SocketAddr, Arc<Counts>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            c.accepted.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut served = 0;
                let mut buf = [0u8; 1024];
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        c.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head.drain(..end + 4);
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        served += 1;
                    }
                    if answers.is_some_and(|a| served >= a) {
                        // what a member's keep-alive timeout does: close, saying nothing
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        return;
                    }
                }
            });
        }
    });
    (addr, counts)
}

type Svc = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    http::Response<
        tower_balancer::balance::ResponseBody<tower_balancer_proxy::forward::MemberBody>,
    >,
    tower_balancer::BoxError,
>;

fn balancer(addr: SocketAddr, config: ForwardConfig) -> Svc {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        format!("http://{addr}").parse().unwrap(),
    ))
    .unwrap();
    let forward = config.build::<RequestBody<Full<Bytes>>>(r.clone()).unwrap();
    tower::util::BoxCloneService::new(
        ServiceBuilder::new()
            .layer(BalanceLayer::new(r, RoundRobin::new()))
            .service(forward),
    )
}

async fn get(svc: Svc) -> String {
    let mut req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut()
        .insert(ClientAddr("127.0.0.1:1".parse().unwrap()));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn one_connection_serves_requests_one_after_another() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (addr, counts) = raw_member(None).await;
        let svc = balancer(addr, ForwardConfig::new());
        for _ in 0..20 {
            assert_eq!(get(svc.clone()).await, "ok");
        }
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_connection_the_member_closed_while_idle_is_not_used_again() {
    tokio::time::timeout(Duration::from_secs(20), async {
        // each connection answers once, then the member closes it without a word
        let (addr, counts) = raw_member(Some(1)).await;
        let svc = balancer(addr, ForwardConfig::new());
        for _ in 0..10 {
            assert_eq!(get(svc.clone()).await, "ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 10);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_idle_past_the_timeout_are_closed_by_the_balancer() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (addr, counts) = raw_member(None).await;
        let svc = balancer(
            addr,
            ForwardConfig::new().idle_timeout(Duration::from_millis(200)),
        );
        assert_eq!(get(svc.clone()).await, "ok");
        // the reaper looks every 200 ms: closed within two looks, well under two seconds
        let mut waited = 0;
        while counts.closed_by_peer.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 50;
            assert!(waited < 2_000, "the idle connection was never closed");
        }
        // and a request after that opens a new one
        assert_eq!(get(svc.clone()).await, "ok");
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn after_a_burst_a_steady_trickle_keeps_one_connection_and_lets_the_rest_go() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (addr, counts) = raw_member(None).await;
        let svc = balancer(
            addr,
            ForwardConfig::new().idle_timeout(Duration::from_secs(1)),
        );
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let svc = svc.clone();
            burst.spawn(async move { get(svc.clone()).await });
        }
        while let Some(body) = burst.join_next().await {
            assert_eq!(body.unwrap(), "ok");
        }
        let opened = counts.accepted.load(Ordering::SeqCst);
        assert!(opened >= 2, "the burst opened {opened} connection(s)");
        // one request every 100 ms for 3 s: the last used connection serves them all, so
        // the others idle past the timeout and are closed (taking the oldest first would
        // keep every one of them in use)
        for _ in 0..30 {
            assert_eq!(get(svc.clone()).await, "ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(counts.accepted.load(Ordering::SeqCst), opened);
        assert_eq!(counts.closed_by_peer.load(Ordering::SeqCst), opened - 1);
    })
    .await
    .unwrap();
}
