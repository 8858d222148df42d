//! N: members with `max=` behind a balancer built from a file, over real sockets: never more
//! than `max` requests at the member, the queue served in arrival order, a queue timeout
//! answered 503 with `Retry-After`, clients that give up while queued, and the queue in
//! `/metrics` and on the manager page.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::{lb, raw};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_balancer::registry::Registry;

const SECOND: Duration = Duration::from_secs(1);

/// A member that counts the requests it holds, remembers the order of their `seq` headers,
/// and answers each only when the test lets one through `gate`.
#[derive(Clone)]
struct Gated {
    url: String,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    order: Arc<Mutex<Vec<u32>>>,
    gate: Arc<Semaphore>,
}

async fn gated_member() -> Gated {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m = Gated {
        url: format!("http://{}", listener.local_addr().unwrap()),
        now: Arc::default(),
        peak: Arc::default(),
        order: Arc::default(),
        gate: Arc::new(Semaphore::new(0)),
    };
    let state = m.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let m = state.clone();
                    async move {
                        let seq = req
                            .headers()
                            .get("seq")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .unwrap_or(u32::MAX);
                        let n = m.now.fetch_add(1, Ordering::SeqCst) + 1;
                        m.peak.fetch_max(n, Ordering::SeqCst);
                        m.order.lock().unwrap().push(seq);
                        m.gate.acquire().await.unwrap().forget();
                        m.now.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    m
}

fn member_table(url: &str, route: &str, max: u32) -> String {
    format!("[[balancer.member]]\nurl = \"{url}\"\nroute = \"{route}\"\nmax = {max}\n")
}

fn request(seq: u32) -> Vec<u8> {
    format!("GET /x HTTP/1.1\r\nHost: lb.test\r\nseq: {seq}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// Waits until `check` holds, for at most `limit`.
async fn until(limit: Duration, what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn depth(r: &Registry) -> u64 {
    r.load_stats().queue().depth()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_limited_to_4_under_64_clients_never_holds_more_and_serves_in_order() {
    let m = gated_member().await;
    let lb = lb(&[], "", "", &member_table(&m.url, "node1", 4)).await;
    let mut clients = Vec::new();
    for seq in 0..64u32 {
        let addr: SocketAddr = lb.addr;
        clients.push(tokio::spawn(async move {
            raw(addr, &request(seq), 60 * SECOND).await
        }));
        // each client reaches the member or the queue before the next one starts
        let (order, r) = (m.order.clone(), lb.registry.clone());
        until(5 * SECOND, "the client to arrive", move || {
            order.lock().unwrap().len() as u64 + depth(&r) == u64::from(seq) + 1
        })
        .await;
    }
    assert_eq!(m.now.load(Ordering::SeqCst), 4);
    assert_eq!(depth(&lb.registry), 60);
    for served in 1..=64usize {
        m.gate.add_permits(1);
        let order = m.order.clone();
        let want = (served + 4).min(64);
        until(
            5 * SECOND,
            "the next queued request to reach the member",
            move || order.lock().unwrap().len() >= want,
        )
        .await;
        assert!(m.now.load(Ordering::SeqCst) <= 4);
    }
    for c in clients {
        let out = c.await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    assert_eq!(
        m.peak.load(Ordering::SeqCst),
        4,
        "more than max= at the member"
    );
    assert_eq!(
        *m.order.lock().unwrap(),
        (0..64).collect::<Vec<_>>(),
        "queued requests reached the member out of arrival order"
    );
    let q = lb.registry.load_stats().queue();
    assert_eq!((q.depth(), q.queued(), q.timed_out()), (0, 60, 0));
}

#[tokio::test]
async fn a_queue_timeout_is_503_with_retry_after_and_shows_in_metrics_and_the_page() {
    let m = gated_member().await;
    let tail = format!(
        "{}[manager]\nlisten = \"127.0.0.1:0\"\n",
        member_table(&m.url, "node1", 1)
    );
    let lb = lb(&[], "", "queue_timeout = \"1s\"", &tail).await;
    let addr = lb.addr;
    let held = tokio::spawn(async move { raw(addr, &request(0), 30 * SECOND).await });
    let order = m.order.clone();
    until(5 * SECOND, "the first request at the member", move || {
        order.lock().unwrap().len() == 1
    })
    .await;
    let started = Instant::now();
    let out = raw(lb.addr, &request(1), 30 * SECOND).await;
    let waited = started.elapsed();
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{out}"
    );
    assert!(waited >= SECOND && waited < 5 * SECOND, "{waited:?}");
    let manager = lb.manager.unwrap();
    let get = |path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {manager}\r\nConnection: close\r\n\r\n");
        async move { raw(manager, req.as_bytes(), 5 * SECOND).await }
    };
    let metrics = get("/metrics").await;
    for line in [
        "lb_queue_timeouts_total{balancer=\"b\"} 1",
        "lb_queue_requests_total{balancer=\"b\"} 1",
        "lb_queue_depth{balancer=\"b\"} 0",
        "lb_member_max_in_flight{balancer=\"b\",member=\"node1\"} 1",
        "lb_queue_wait_seconds_count{balancer=\"b\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in {metrics}");
    }
    let page = get("/balancer-manager").await;
    assert!(page.contains("1 / max 1"), "{page}");
    assert!(page.contains("1 timed out"), "{page}");
    m.gate.add_permits(1);
    assert!(held.await.unwrap().starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn clients_that_give_up_while_queued_leak_no_slot() {
    let m = gated_member().await;
    let lb = lb(&[], "", "", &member_table(&m.url, "node1", 2)).await;
    let addr = lb.addr;
    let held: Vec<_> = (0..2)
        .map(|seq| tokio::spawn(async move { raw(addr, &request(seq), 30 * SECOND).await }))
        .collect();
    let order = m.order.clone();
    until(5 * SECOND, "two requests at the member", move || {
        order.lock().unwrap().len() == 2
    })
    .await;
    // ten clients queue, then hang up before any room frees
    let quitters: Vec<_> = (10..20)
        .map(|seq| {
            tokio::spawn(async move { raw(addr, &request(seq), Duration::from_millis(300)).await })
        })
        .collect();
    for q in quitters {
        let out = q.await.unwrap();
        assert!(
            !out.starts_with("HTTP/1.1"),
            "answered while the member was full: {out}"
        );
    }
    let r = lb.registry.clone();
    until(
        5 * SECOND,
        "the queue to forget the clients that left",
        move || depth(&r) == 0,
    )
    .await;
    // their waits are in the histogram, as a served or timed-out request's are
    let waits = lb.registry.load_stats().queue().wait_times();
    assert_eq!(waits.count, 10, "{waits:?}");
    assert!(waits.sum >= 10.0 * 0.25, "{waits:?}");
    m.gate.add_permits(2);
    for h in held {
        assert!(h.await.unwrap().starts_with("HTTP/1.1 200"));
    }
    // both slots are free again: two more at once, neither waiting
    let more: Vec<_> = (30..32)
        .map(|seq| tokio::spawn(async move { raw(addr, &request(seq), 30 * SECOND).await }))
        .collect();
    let order = m.order.clone();
    until(
        5 * SECOND,
        "two new requests at the member at once",
        move || order.lock().unwrap().len() == 4,
    )
    .await;
    let mut seen = m.order.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [0, 1, 30, 31],
        "a client that left was sent on anyway"
    );
    m.gate.add_permits(2);
    for h in more {
        assert!(h.await.unwrap().starts_with("HTTP/1.1 200"));
    }
    assert_eq!(
        lb.registry.load().get("node1").unwrap().stats().in_flight(),
        0
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_does_not_free_the_slot_its_member_is_still_using() {
    let m = gated_member().await;
    let lb = lb(&[], "", "", &member_table(&m.url, "node1", 1)).await;
    let addr = lb.addr;
    // the client gives up after 200 ms; the member is still working on its request
    let quitter =
        tokio::spawn(async move { raw(addr, &request(0), Duration::from_millis(200)).await });
    let order = m.order.clone();
    until(5 * SECOND, "the first request at the member", move || {
        order.lock().unwrap().len() == 1
    })
    .await;
    assert!(!quitter.await.unwrap().starts_with("HTTP/1.1"));
    let next = tokio::spawn(async move { raw(addr, &request(1), 30 * SECOND).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        m.order.lock().unwrap().len(),
        1,
        "a second request reached a max = 1 member still busy with the first"
    );
    assert_eq!(m.peak.load(Ordering::SeqCst), 1);
    // the member finishes the abandoned request: the waiting one goes in
    m.gate.add_permits(2);
    assert!(next.await.unwrap().starts_with("HTTP/1.1 200"));
    assert_eq!(m.peak.load(Ordering::SeqCst), 1);
    let r = lb.registry.clone();
    until(5 * SECOND, "the slot to be free again", move || {
        r.load().get("node1").unwrap().stats().in_flight() == 0
    })
    .await;
}

/// A member that answers every request with a 64 MiB body.
async fn big_member() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(vec![
                        b'x';
                        64 << 20
                    ]))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_and_frees_the_member() {
    let url = big_member().await;
    let lb = lb(
        &[],
        "send_timeout = \"1s\"",
        "",
        &format!(
            "{}[manager]\nlisten = \"127.0.0.1:0\"\n",
            member_table(&url, "node1", 1)
        ),
    )
    .await;
    let mut stalled = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        b"GET /big HTTP/1.1\r\nHost: lb.test\r\n\r\n",
    )
    .await
    .unwrap();
    let r = lb.registry.clone();
    until(5 * SECOND, "the request at the member", move || {
        r.load().get("node1").unwrap().stats().in_flight() == 1
    })
    .await;
    // it reads nothing: within the send timeout (and a little) its slot is free again
    let r = lb.registry.clone();
    until(
        10 * SECOND,
        "the non-reading client's slot to be freed",
        move || r.load().get("node1").unwrap().stats().in_flight() == 0,
    )
    .await;
    let out = raw(
        lb.addr,
        b"HEAD /big HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
        10 * SECOND,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    drop(stalled);
    // counted once, for what it was
    let metrics = harness::metrics(&lb).await;
    let line = "lb_client_connections_closed_total{reason=\"send_timeout\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}
