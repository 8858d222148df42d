//! The forwarder's member connections against a raw member on 127.0.0.1 that counts them:
//! reused while open, never used once the member closed them while idle or sent anything
//! past its answer (the request goes out on a new one, without an error), and connections
//! closed by the balancer once idle past the timeout (keep-alive races: `member_races.rs`). Request heads on plain connections are written
//! by one writer task per runtime and thread, batched per scheduler tick: against a member
//! that answers each request with its own path, every answer must reach the request that
//! asked for it, on a current-thread runtime, on a multi-thread one (where the writer may run
//! on another worker), and on a thread that drives two live runtimes in turn; and a request
//! given up before the writer came to it is never sent. Every test is bounded by a timeout.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use tower_balancer::balance::{Picked, ServedBy};
use tower_balancer::client::ClientAddr;
use tower_balancer_proxy::forward::ForwardConfig;

#[path = "raw_member/mod.rs"]
mod raw_member;

use raw_member::{balancer, get, raw_member, Behaviour, Svc};

#[tokio::test]
async fn one_connection_serves_requests_one_after_another() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (addr, counts) = raw_member(Behaviour::Answer(None)).await;
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
        let (addr, counts) = raw_member(Behaviour::Answer(Some(1))).await;
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
        let (addr, counts) = raw_member(Behaviour::Answer(None)).await;
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
        let (addr, counts) = raw_member(Behaviour::Answer(None)).await;
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

#[tokio::test]
async fn bytes_a_member_sends_past_its_answer_are_never_read_as_the_next_answer() {
    tokio::time::timeout(Duration::from_secs(20), async {
        // in the same write as the answer, and 20 ms after it, with the connection idle
        for delay in [Duration::ZERO, Duration::from_millis(20)] {
            let (addr, counts) = raw_member(Behaviour::Stray(delay)).await;
            let svc = balancer(addr, ForwardConfig::new());
            for _ in 0..5 {
                assert_eq!(get(svc.clone()).await, "ok", "{delay:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // each connection is dropped once the stray bytes are seen
            assert_eq!(counts.accepted.load(Ordering::SeqCst), 5, "{delay:?}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn requests_with_and_without_a_body_each_keep_a_connection() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (addr, counts) = raw_member(Behaviour::Answer(None)).await;
        let svc = balancer(addr, ForwardConfig::new());
        for _ in 0..10 {
            assert_eq!(get(svc.clone()).await, "ok");
            let mut req = Request::post("/")
                .header("content-length", "1")
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap();
            req.extensions_mut()
                .insert(ClientAddr("127.0.0.1:1".parse().unwrap()));
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        // the own path's connection and hyper's, each reused
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_answer_carries_none_of_its_requests_extensions() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (addr, _) = raw_member(Behaviour::Answer(None)).await;
        let svc = balancer(addr, ForwardConfig::new());
        // the first request opens the connection; the second goes out on it, pooled
        for _ in 0..2 {
            let mut req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
            req.extensions_mut()
                .insert(ClientAddr("127.0.0.1:1".parse().unwrap()));
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let ext = res.extensions();
            assert!(ext.get::<ServedBy>().is_some(), "the member is named");
            assert!(
                ext.get::<ClientAddr>().is_none(),
                "a request's mark on its answer"
            );
            assert!(
                ext.get::<Picked>().is_none(),
                "a request's mark on its answer"
            );
            // read to its end: the connection goes back to the pool
            res.into_body().collect().await.unwrap();
        }
    })
    .await
    .unwrap();
}

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

/// A GET of `path`, checked for a 200; its body.
async fn get_path(svc: Svc, path: String) -> String {
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
                tokio::spawn(async move { (get_path(svc, path.clone()).await, path) })
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
        let svc = balancer(echo_member().await, ForwardConfig::new());
        // later rounds reuse the pooled connections, their heads batched per tick
        rounds(&svc, "ct", 5, 40).await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_over_two_workers_each_get_their_own_answer() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let svc = balancer(echo_member().await, ForwardConfig::new());
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
            first.block_on(async { balancer(echo_member().await, ForwardConfig::new()) }),
            second.block_on(async { balancer(echo_member().await, ForwardConfig::new()) }),
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
        let svc = balancer(addr, ForwardConfig::new());
        // a connection in the pool, so the next request's head is queued at its first poll
        assert_eq!(get_path(svc.clone(), "/first".into()).await, "/first");
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
        assert_eq!(get_path(svc, "/after".into()).await, "/after");
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
