//! H: descriptors running out. With a low open-file limit and a thousand idle clients, the
//! client connection cap (by default half the limit after a reserve) keeps descriptors for
//! the health probe and member connections, so a healthy member is never marked down and the
//! balancer keeps serving. The probe is a TCP connect, which needs a new descriptor every
//! time (checked to fail with `max_connections = 100000`). Its own test binary: it lowers
//! this process's limit.
#![allow(clippy::unwrap_used)]

#[path = "safe/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "tls_pki/mod.rs"]
mod tls_pki;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{echo_member, lb, raw};
use tower_balancer::registry::Health;

const TARGET: &str = "FD_CAP_TARGET";
const CLIENTS: usize = 1000;
const HOLD: Duration = Duration::from_secs(3);

/// Run as a child process by the test below: opens idle connections and holds them.
#[test]
#[ignore = "a helper process for the test below, which runs it"]
fn hold_idle_connections() {
    let Ok(target) = std::env::var(TARGET) else {
        return;
    };
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(4096), hard).unwrap();
    let addr: SocketAddr = target.parse().unwrap();
    let deadline = Instant::now() + HOLD;
    let held: Vec<TcpStream> = (0..CLIENTS)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    println!("holding {}", held.len());
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_clients_under_a_256_descriptor_limit_never_take_a_member_down() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256, hard).unwrap();
    let (member, _) = echo_member().await;
    let lb = lb(
        &[member],
        "header_read_timeout = \"1s\"",
        "",
        "[balancer.health]\nmethod = \"TCP\"\ninterval = \"100ms\"\ninitial = \"up\"\n",
    )
    .await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "hold_idle_connections",
            "--nocapture",
        ])
        .env(TARGET, lb.addr.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut worst = Health::Healthy;
    while start.elapsed() < HOLD + Duration::from_secs(1) {
        let m = lb.registry.load().get("node1").unwrap().clone();
        if m.health() != Health::Healthy {
            worst = m.health();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(
        worst,
        Health::Healthy,
        "the probe failed for want of descriptors"
    );
    let out = raw(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// An HTTP/2 client's streams to an HTTP/1.1 member each need a member connection: beyond
/// the first of a connection, each holds a descriptor's place under the connection cap (a
/// connection holds two) while it is answered, and one that finds none gets 503 at once,
/// with nothing sent. Before, a few clients' streams opened member connections until the
/// descriptors ran out (`EMFILE` on every connect, the probes' too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_hold_places_under_the_cap_while_they_are_answered() {
    // the cap of 4 connections is 8 descriptors: the connection's two, and one each for
    // six streams beside the first
    let (lb, _send) = harness::h2_bursts_at_a_cap("max_connections = 4", 7, 503).await;
    // refused once picked (a member speaking HTTP/2 would have taken them): counted as
    // refused for capacity, and among the answers, with access-log lines
    let m = harness::metrics(&lb).await;
    assert!(
        m.contains("lb_client_requests_refused_total{reason=\"capacity\"} 6"),
        "{m}"
    );
    assert!(
        m.contains("lb_client_responses_total{code=\"5xx\"} 6"),
        "{m}"
    );
    // never held against the member
    assert!(
        m.lines()
            .filter(|l| l.starts_with("lb_member_failures_total{"))
            .all(|l| l.ends_with(" 0")),
        "{m}"
    );
}

/// A stream's place under the cap is its member connection's: it goes back once the
/// member's answer is read whole, not when the client has taken it all. A client that
/// grants no flow-control window leaves small answers waiting on it for as long as it
/// likes, but their member connections went back to the pool at once; counted until the
/// client took them, ten connections asking for a 9-byte page under `ulimit -n 256` had 58
/// streams refused with 503, and new clients waiting, with 78 of 256 descriptors in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_answer_waiting_on_the_clients_window_holds_no_place() {
    let (member, _) = echo_member().await;
    // 8 places: the connection's two, and six for streams beside the first
    let lb = lb(&[member], "max_connections = 4", "", "").await;
    let sock = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake(hyper_util::rt::TokioIo::new(sock))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let mut send = send.clone();
        send.ready().await.unwrap();
        let req = http::Request::get("http://lb.test/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        statuses.push(res.status().as_u16());
        // the body stays unread: its stream waits on the window for as long as it is held
        held.push(res);
    }
    assert_eq!(statuses, vec![200; 20]);
}

/// The connection cap is the process's, not a worker's: with two workers on the port and
/// `max_connections = 3`, three clients are served at once whichever workers the kernel
/// gives them, and a fourth waits until one leaves. Before, each worker had a third of
/// the cap's share (3 / 2 = 1), so two were served and the third waited, unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_connection_cap() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "workers = 2\nmax_connections = 3", "", "").await;
    let mut held = Vec::new();
    for i in 0..3 {
        let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
        let head = ask(&mut s).await;
        assert!(
            head.as_deref().is_ok_and(|h| h.starts_with("HTTP/1.1 200")),
            "client {i} was not served: {head:?}"
        );
        held.push(s);
    }
    // the fourth waits for a place
    let mut fourth = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    let waiting = tokio::spawn(async move {
        let head = ask(&mut fourth).await;
        (fourth, head)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a fourth client was served");
    drop(held.pop());
    let (_fourth, head) = waiting.await.unwrap();
    assert!(
        head.as_deref().is_ok_and(|h| h.starts_with("HTTP/1.1 200")),
        "the fourth was not served once a place was free: {head:?}"
    );
}

/// A member on TLS at 127.0.0.1 speaking what `alpn` offers, answering `/slow` after
/// 400 ms: its URL, its CA's PEM file, and how many connections it took.
async fn tls_member(alpn: &[&[u8]], test: &str) -> (String, String, Arc<AtomicUsize>) {
    let pki = tls_pki::pki_speaking("127.0.0.1", alpn);
    let ca = std::env::temp_dir().join(format!("fd-cap-{test}-{}.pem", std::process::id()));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = pki.acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|req: http::Request<_>| async move {
                    let _: &hyper::body::Incoming = req.body();
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    (
        format!("https://127.0.0.1:{port}"),
        ca.display().to_string(),
        taken,
    )
}

/// Streams to a member that speaks HTTP/2 share its one connection: they hold no places
/// under the cap. Charged a place each on arrival (before the pick), `h2load -c10 -m100`
/// to HTTP/2 members under `ulimit -n 256` got 2,617 capacity 503s of 3,000 with 25
/// descriptors in use (round 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_to_an_http2_member_share_its_connection_and_hold_no_places() {
    let (url, ca, taken) = tls_member(&[b"h2"], "h2").await;
    // 8 places: with a place a stream, 7 of a burst of 40 would be served
    let trust = format!("trust_roots = [\"{ca}\"]");
    let manager = "[manager]\nlisten = \"127.0.0.1:0\"\n";
    let lb = lb(&[url], "max_connections = 4", &trust, manager).await;
    let send = harness::h2_client(lb.addr).await;
    // the member's connection made
    assert_eq!(harness::h2_get(&send, "/").await.unwrap(), 200);
    for round in 0..2 {
        assert_eq!(
            harness::h2_slow_burst(&send, 40).await,
            vec![200; 40],
            "round {round}"
        );
    }
    assert_eq!(taken.load(Ordering::SeqCst), 1, "member connections made");
    let m = harness::metrics(&lb).await;
    assert!(
        m.contains("lb_client_requests_refused_total{reason=\"capacity\"} 0"),
        "{m}"
    );
}

/// Streams to a member over TLS that chooses HTTP/1.1 each take a connection of their own,
/// and a place for it; those past the cap get 503, sent to no member, and a session pinned
/// to the member stays pinned (failover does not take them elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_to_a_tls_http1_member_each_take_a_connection_and_a_place() {
    let (url, ca, taken) = tls_member(&[b"http/1.1"], "h1").await;
    let (other, ca2, _) = tls_member(&[b"h2"], "h1-other").await;
    let trust = format!("trust_roots = [\"{ca}\", \"{ca2}\"]\nmaxattempts = 2");
    let lb = lb(&[url, other], "max_connections = 4", &trust, "").await;
    let send = harness::h2_client(lb.addr).await;
    // node2's connection made, so that a stream failed over to it would need no place
    let warm = http::Request::get("http://lb.test/")
        .header("cookie", "JSESSIONID=abc.node2")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let mut warming = send.clone();
    assert_eq!(warming.send_request(warm).await.unwrap().status(), 200);
    // pinned to node1 (the TLS HTTP/1.1 member) by the route in its session cookie
    let asks: Vec<_> = (0..10)
        .map(|_| {
            let mut send = send.clone();
            let req = http::Request::get("http://lb.test/slow")
                .header("cookie", "JSESSIONID=abc.node1")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            tokio::spawn(async move {
                let res = send.send_request(req).await.unwrap();
                (
                    res.status().as_u16(),
                    res.headers().contains_key("set-cookie"),
                )
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for ask in asks {
        let (status, re_pinned) = tokio::time::timeout(Duration::from_secs(10), ask)
            .await
            .unwrap()
            .unwrap();
        assert!(!re_pinned, "a session moved");
        statuses.push(status);
    }
    statuses.sort_unstable();
    let mut expected = vec![200; 7];
    expected.resize(10, 503);
    assert_eq!(statuses, expected);
    assert_eq!(taken.load(Ordering::SeqCst), 7, "member connections made");
}

/// Asks for `/` on `s`: the answer's head, or `Err` when none came within 1.5 s.
async fn ask(s: &mut tokio::net::TcpStream) -> Result<String, tokio::time::error::Elapsed> {
    use tokio::io::AsyncWriteExt;

    s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let answered = tokio::time::timeout(
        Duration::from_millis(1500),
        harness::read_response(s, &mut buf),
    );
    answered.await.map(|(head, _)| head)
}
