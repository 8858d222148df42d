//! Request heads on plain member connections are written by one writer task per runtime
//! and thread, batched per scheduler tick: against a raw member on 127.0.0.1 that answers
//! each request with its own path, every answer must reach the request that asked for it,
//! on a current-thread runtime, on a multi-thread one (where the writer may run on another
//! worker than the request), and on a thread that drives two runtimes in turn while both
//! are alive; and a request given up before the writer came to it is never sent. Every
//! test is bounded by a timeout.
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

/// A member that answers each request with its target, after a short pause so that
/// answers overlap and connections pile up in the pool.
async fn echo_member() -> SocketAddr {
    counting_member().await.0
}

/// [`echo_member`], and the number of request heads it has read.
async fn counting_member() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&head[..end]).into_owned();
                        head.drain(..end + 4);
                        seen.fetch_add(1, Ordering::SeqCst);
                        let target = text.split(' ').nth(1).unwrap_or("?").to_owned();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{target}",
                            target.len()
                        );
                        if sock.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, heads)
}

type Svc = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    http::Response<
        tower_balancer::balance::ResponseBody<tower_balancer_proxy::forward::MemberBody>,
    >,
    tower_balancer::BoxError,
>;

fn balancer(addr: SocketAddr) -> Svc {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        format!("http://{addr}").parse().unwrap(),
    ))
    .unwrap();
    let forward = ForwardConfig::new()
        .build::<RequestBody<Full<Bytes>>>(r.clone())
        .unwrap();
    tower::util::BoxCloneService::new(
        ServiceBuilder::new()
            .layer(BalanceLayer::new(r, RoundRobin::new()))
            .service(forward),
    )
}

async fn get(svc: Svc, path: String) -> String {
    let mut req = Request::get(path.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    req.extensions_mut()
        .insert(ClientAddr("127.0.0.1:1".parse().unwrap()));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// Rounds of `width` requests at once, each checked against its own path.
async fn rounds(svc: &Svc, tag: &str, rounds: usize, width: usize) {
    for round in 0..rounds {
        let asks: Vec<_> = (0..width)
            .map(|i| {
                let path = format!("/{tag}/{round}/{i}");
                let svc = svc.clone();
                tokio::spawn(async move { (get(svc, path.clone()).await, path) })
            })
            .collect();
        for ask in asks {
            let (answer, path) = ask.await.unwrap();
            assert_eq!(answer, path, "an answer reached another request");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_requests_on_one_thread_each_get_their_own_answer() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let svc = balancer(echo_member().await);
        // later rounds reuse the pooled connections, their heads batched per tick
        rounds(&svc, "ct", 5, 40).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_over_two_workers_each_get_their_own_answer() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let svc = balancer(echo_member().await);
        rounds(&svc, "mt", 5, 40).await;
    })
    .await
    .unwrap();
}

#[test]
fn a_thread_driving_two_live_runtimes_in_turn_sends_every_head() {
    let run = std::thread::spawn(|| {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let first = runtime();
        let second = runtime();
        // each runtime gets its member, balancer and pooled connections, and is driven in
        // turn by this one thread; neither is dropped until the end
        let (svc1, svc2) = (
            first.block_on(async { balancer(echo_member().await) }),
            second.block_on(async { balancer(echo_member().await) }),
        );
        for turn in 0..3 {
            for (rt, svc) in [(&first, &svc1), (&second, &svc2)] {
                rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), async {
                        let tag = format!("turn{turn}");
                        rounds(svc, &tag, 2, 8).await;
                    })
                    .await
                    .expect("a head queued on this thread was never written");
                });
            }
        }
    });
    run.join().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_given_up_before_its_head_went_out_is_never_sent() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let (addr, heads) = counting_member().await;
        let svc = balancer(addr);
        // a connection in the pool, so the next request's head is queued at its first poll
        assert_eq!(get(svc.clone(), "/first".into()).await, "/first");
        let mut req = Request::get("/given-up")
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.extensions_mut()
            .insert(ClientAddr("127.0.0.1:1".parse().unwrap()));
        let mut call = Box::pin(svc.clone().oneshot(req));
        // polled once (the head queued for the writer), then dropped in the same tick, as
        // when its client hangs up: the writer has not run yet
        assert!(futures_poll_once(call.as_mut()).is_pending());
        drop(call);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            heads.load(Ordering::SeqCst),
            1,
            "the given-up head was sent"
        );
        // and the connection's next request goes out as usual
        assert_eq!(get(svc, "/after".into()).await, "/after");
        assert_eq!(heads.load(Ordering::SeqCst), 2);
    })
    .await
    .unwrap();
}

/// Polls `fut` once with a waker that does nothing.
fn futures_poll_once<F: std::future::Future>(
    fut: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.poll(&mut cx)
}
