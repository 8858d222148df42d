//! N: per-client limits behind a balancer built from a file, over real sockets: a client
//! flooding requests is held to its rate within 5% while another is served in full; the
//! client behind a trusted proxy is the one `X-Forwarded-For` names and nobody else; a
//! client past its connection cap is closed at accept while others connect, and an HTTP/2
//! client's streams take their member connections from the same share.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::{echo_member, lb, raw, read_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECOND: Duration = Duration::from_secs(1);

/// A connection to `addr` is closed before anything it sent is read.
async fn assert_closed_at_accept(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s
        .write_all(b"GET /x HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(5 * SECOND, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection was kept open");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

/// Sends requests on `connections` keep-alive connections as `client` (its
/// `X-Forwarded-For`) until `run` has passed; the statuses it got, counted: (200, 429, other).
async fn flood(
    addr: SocketAddr,
    client: &'static str,
    connections: usize,
    run: Duration,
) -> (u64, u64, u64) {
    let deadline = Instant::now() + run;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let mut buf = Vec::new();
                let req = format!(
                    "GET /x HTTP/1.1\r\nHost: lb.test\r\nX-Forwarded-For: {client}\r\n\r\n"
                );
                let mut counts = (0, 0, 0);
                while Instant::now() < deadline {
                    s.write_all(req.as_bytes()).await.unwrap();
                    let (head, _) = read_response(&mut s, &mut buf).await;
                    match &head[9..12] {
                        "200" => counts.0 += 1,
                        "429" => {
                            assert!(
                                head.to_ascii_lowercase().contains("retry-after: 1\r\n"),
                                "{head}"
                            );
                            counts.1 += 1;
                        }
                        _ => counts.2 += 1,
                    }
                }
                counts
            })
        })
        .collect();
    let mut total = (0, 0, 0);
    for t in tasks {
        let c = t.await.unwrap();
        total = (total.0 + c.0, total.1 + c.1, total.2 + c.2);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_held_to_its_rate_and_others_are_unaffected() {
    let (member, _) = echo_member().await;
    let lb = lb(
        &[member],
        "[server.per_client]\nrate = 100\nburst = 20\n",
        "trusted_proxies = [\"127.0.0.1\"]",
        "",
    )
    .await;
    let run = 3 * SECOND;
    let started = Instant::now();
    let (hammer, polite) = tokio::join!(flood(lb.addr, "203.0.113.1", 8, run), async {
        // another client behind the same proxy, well under its rate
        let mut ok = 0;
        for _ in 0..15 {
            let out = raw(
                lb.addr,
                b"GET /x HTTP/1.1\r\nHost: lb.test\r\nX-Forwarded-For: 203.0.113.2\r\nConnection: close\r\n\r\n",
                5 * SECOND,
            )
            .await;
            ok += u64::from(out.starts_with("HTTP/1.1 200"));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        ok
    });
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(polite, 15, "the other client was refused");
    assert_eq!(hammer.2, 0, "statuses other than 200 and 429");
    assert!(hammer.1 > 0, "the flood was never refused: {hammer:?}");
    // the budget: the burst, then 100 a second over the time the flood ran
    let expected = 20.0 + 100.0 * elapsed;
    #[allow(clippy::cast_precision_loss)]
    let got = hammer.0 as f64;
    eprintln!("flood: {hammer:?} in {elapsed:.2} s; expected {expected:.0} to pass");
    assert!(
        (got - expected).abs() <= 0.05 * expected,
        "{got} requests passed in {elapsed:.2} s, expected {expected:.0} ± 5%"
    );
}

#[tokio::test]
async fn a_client_past_its_connection_cap_is_closed_at_accept() {
    let (member, _) = echo_member().await;
    let lb = lb(
        &[member],
        "[server.per_client]\nconnections = 3\n",
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        let mut buf = Vec::new();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: lb.test\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(s);
    }
    // the fourth is closed before anything is read
    assert_closed_at_accept(lb.addr).await;
    // one closes: a new one is served again
    drop(held.pop());
    let mut served = false;
    for _ in 0..50 {
        let out = raw(
            lb.addr,
            b"GET /x HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
            5 * SECOND,
        )
        .await;
        if out.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a freed place was not given back");
    let metrics = harness::metrics(&lb).await;
    assert!(
        metrics.contains("lb_client_limited_total{limit=\"connections\"} 1"),
        "{metrics}"
    );
}

/// The per-client cap counts descriptors, as the server's does: a connection two (its own
/// and its member connection's), an HTTP/2 stream beside others one. One HTTP/2 connection
/// of many streams held a member connection a stream, past what `connections` allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_clients_streams_count_under_its_connection_cap() {
    // three connections' share is six descriptors: the connection's two and one each for
    // four streams beside the first
    let (lb, send) =
        harness::h2_bursts_at_a_cap("[server.per_client]\nconnections = 3\n", 5, 429).await;
    // while its streams hold the share, the same client gets no second connection
    let burst = tokio::spawn({
        let send = send.clone();
        async move { harness::h2_slow_burst(&send, 5).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_closed_at_accept(lb.addr).await;
    assert_eq!(burst.await.unwrap(), [200; 5]);
    let m = harness::metrics(&lb).await;
    assert!(
        m.contains("lb_client_limited_total{limit=\"connections\"} 11"),
        "{m}"
    );
}

/// The places are the connection's, one for each stream under way beside the first: when
/// the first ends while others run, one of theirs is given back. Each stream held its own,
/// so the survivors kept one more than they needed, and a new stream got 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_holds_a_place_for_each_stream_beside_the_first_whichever_ends() {
    let (url, _) = harness::slow_member().await;
    let lb = lb(&[url], "[server.per_client]\nconnections = 4\n", "", "").await;
    let send = harness::h2_client(lb.addr).await;
    let first = harness::h2_get(&send, "/slow");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // four connections' share is eight: the connection's two and six streams beside it
    let long: Vec<_> = (0..6).map(|_| harness::h2_get(&send, "/slower")).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(harness::h2_get(&send, "/x").await.unwrap(), 429);
    assert_eq!(first.await.unwrap(), 200);
    // six under way: the first of them holds nothing, so one place is free
    assert_eq!(harness::h2_get(&send, "/slower").await.unwrap(), 200);
    for l in long {
        assert_eq!(l.await.unwrap(), 200);
    }
    // and with nothing under way, every place came back: three more connections fit
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut held = Vec::new();
    for i in 0..3 {
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        let mut buf = Vec::new();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: lb.test\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"), "connection {i}: {head}");
        held.push(s);
    }
}

/// Behind a trusted proxy the connections are the proxy's: each request under way of the
/// client it names counts as one of that client's connections. The cap did nothing there:
/// one client behind a CDN had as many requests under way as it liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_clients_requests_under_way_count_as_its_connections() {
    let (url, _) = harness::slow_member().await;
    let lb = lb(
        &[url],
        "[server.per_client]\nconnections = 2\n",
        "trusted_proxies = [\"127.0.0.1\"]",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let asks: Vec<_> = (0..5)
        .map(|_| "203.0.113.7")
        .chain(["203.0.113.8", ""])
        .map(|c| {
            let addr = lb.addr;
            tokio::spawn(async move {
                let xff = if c.is_empty() {
                    String::new()
                } else {
                    format!("X-Forwarded-For: {c}\r\n")
                };
                let head = format!(
                    "GET /slow HTTP/1.1\r\nHost: lb.test\r\n{xff}Connection: close\r\n\r\n"
                );
                let out = raw(addr, head.as_bytes(), 5 * SECOND).await;
                (c, out[9..12].to_owned())
            })
        })
        .collect();
    let mut got = Vec::new();
    for a in asks {
        got.push(a.await.unwrap());
    }
    got.sort();
    // the proxy's own request (no forwarded address) and the other client are served; the
    // first client has two requests under way, and three more get 429
    assert_eq!(
        got.iter()
            .map(|(c, s)| format!("{c}={s}"))
            .collect::<Vec<_>>(),
        [
            "=200",
            "203.0.113.7=200",
            "203.0.113.7=200",
            "203.0.113.7=429",
            "203.0.113.7=429",
            "203.0.113.7=429",
            "203.0.113.8=200"
        ]
    );
    // its places came back with its answers
    let out = raw(
        lb.addr,
        b"GET /x HTTP/1.1\r\nHost: lb.test\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n",
        5 * SECOND,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let m = harness::metrics(&lb).await;
    assert!(
        m.contains("lb_client_limited_total{limit=\"connections\"} 3"),
        "{m}"
    );
}

/// Behind a trusted proxy, a client's WebSocket holds its place for as long as it is open,
/// as its request did while answered: it was let go at the `101`, so a client behind a CDN
/// could open as many tunnels as it liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_a_clients_websockets_hold_its_places_while_open() {
    // a member that switches and holds the tunnel open
    let url = harness::member(|mut sock| async move {
        if harness::read_request_head(&mut sock).await.is_some() {
            let _ = sock
                .write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                )
                .await;
            tokio::time::sleep(5 * SECOND).await;
        }
    })
    .await;
    let lb = lb(
        &[url],
        "[server.per_client]\nconnections = 2\n",
        "trusted_proxies = [\"127.0.0.1\"]",
        "",
    )
    .await;
    let upgrade = |client: &'static str| {
        let addr = lb.addr;
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "GET /ws HTTP/1.1\r\nHost: lb.test\r\nX-Forwarded-For: {client}\r\nConnection: Upgrade\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            let (head, _) = read_response(&mut s, &mut buf).await;
            (head[9..12].to_owned(), s)
        }
    };
    let (first, _a) = upgrade("203.0.113.7").await;
    let (second, _b) = upgrade("203.0.113.7").await;
    let (third, _c) = upgrade("203.0.113.7").await;
    let (other, _d) = upgrade("203.0.113.8").await;
    assert_eq!(
        [&*first, &*second, &*third, &*other],
        ["101", "101", "429", "101"]
    );
}

#[tokio::test]
async fn without_a_trusted_proxy_forwarded_addresses_are_not_believed() {
    let (member, _) = echo_member().await;
    let lb = lb(
        &[member],
        "[server.per_client]\nrate = 1\nburst = 2\n",
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    // the same peer claiming a new address each time is still one client
    let mut statuses = Vec::new();
    for i in 0..4 {
        let req = format!(
            "GET /x HTTP/1.1\r\nHost: lb.test\r\nX-Forwarded-For: 198.51.100.{i}\r\nConnection: close\r\n\r\n"
        );
        let out = raw(lb.addr, req.as_bytes(), 5 * SECOND).await;
        statuses.push(out[9..12].to_owned());
    }
    assert_eq!(statuses, ["200", "200", "429", "429"]);
    let metrics = harness::metrics(&lb).await;
    assert!(
        metrics.contains("lb_client_limited_total{limit=\"rate\"} 2"),
        "{metrics}"
    );
}
