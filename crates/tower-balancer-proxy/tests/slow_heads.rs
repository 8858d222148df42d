//! The header-read timeout on a keep-alive connection, from the balancer built from a file:
//! every request head gets the whole limit, counted from the answer before it, whichever
//! request it is, and a head left half-sent gets 408 once that limit is up, never sooner and
//! never later than a moment after. The server keeps one timer a connection for these
//! deadlines (`serve/head_timer.rs`), armed at the first and moved lazily, so this is where
//! moving it could go wrong. Also what the server counts of the heads it refuses and the
//! answers it sends.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{echo_member, lb, read_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_millis(600);

/// Sends a whole GET on `s` and reads its answer; when the answer arrived.
async fn answered(s: &mut TcpStream, buf: &mut Vec<u8>) -> Instant {
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(s, buf).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Instant::now()
}

/// Reads to the end (5 s at most): what the balancer sent, and when it closed.
async fn until_closed(s: &mut TcpStream) -> (String, Instant) {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the half-sent head was held past the header-read timeout")
        .unwrap();
    (String::from_utf8_lossy(&out).into_owned(), Instant::now())
}

#[tokio::test]
async fn a_later_request_left_half_sent_gets_408_at_its_own_deadline() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "header_read_timeout = \"600ms\"", "", "").await;
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    let mut buf = Vec::new();
    // the first deadline is armed after this answer; the second request comes halfway to it
    answered(&mut s, &mut buf).await;
    tokio::time::sleep(LIMIT / 2).await;
    let second = answered(&mut s, &mut buf).await;
    // the third head starts and stalls: its limit counts from the second answer, so the
    // first deadline passes while it is being read and must not end it
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\nX-Half: ")
        .await
        .unwrap();
    let (out, closed) = until_closed(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout"), "{out:?}");
    let waited = closed - second;
    assert!(
        waited >= LIMIT - Duration::from_millis(150),
        "408 early: {waited:?}"
    );
    assert!(waited < LIMIT * 3, "408 late: {waited:?}");
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_limit() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "header_read_timeout = \"600ms\"", "", "").await;
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    let mut buf = Vec::new();
    let first = answered(&mut s, &mut buf).await;
    // one byte every 50 ms: always active, never done; the answer is read as soon as it
    // comes, before the next byte (writing to a closed socket would reset it), and the
    // trickle stops by itself (the head's bytes, or three limits)
    let head =
        b"GET / HTTP/1.1\r\nHost: lb.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut early = Vec::new();
    for b in head {
        s.write_all(&[*b]).await.unwrap();
        let mut chunk = [0u8; 256];
        if let Ok(n) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut chunk)).await {
            early.extend_from_slice(&chunk[..n.unwrap()]);
            break;
        }
        if first.elapsed() > LIMIT * 3 {
            break;
        }
    }
    let (rest, closed) = until_closed(&mut s).await;
    let out = String::from_utf8_lossy(&early).into_owned() + &rest;
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout"), "{out:?}");
    let waited = closed - first;
    assert!(
        waited >= LIMIT - Duration::from_millis(150),
        "408 early: {waited:?}"
    );
    assert!(waited < LIMIT * 3, "408 late: {waited:?}");
}

/// Sends `bytes` on a new connection and reads until the balancer closes it (5 s at most):
/// what it sent back, and how long the connection was held.
async fn held_after(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    s.write_all(bytes).await.unwrap();
    let (out, closed) = until_closed(&mut s).await;
    (out, closed - start)
}

#[tokio::test]
async fn the_start_of_an_http2_preface_is_cut_off_at_the_header_read_limit() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "header_read_timeout = \"600ms\"", "", "").await;
    // hyper-util waits for the whole preface to tell HTTP/2 from HTTP/1, and hyper's head
    // timer starts only after: these were held for ever
    for sent in [
        &b"P"[..],
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n",
    ] {
        let (out, held) = held_after(lb.addr, sent).await;
        // 408, or hyper's 400 for an HTTP/1 line naming HTTP/2.0: either way told and closed
        assert!(
            out.starts_with("HTTP/1.1 408") || out.starts_with("HTTP/1.1 400"),
            "{sent:?}: {out:?}"
        );
        assert!(
            held >= LIMIT - Duration::from_millis(150),
            "{sent:?}: {held:?}"
        );
        assert!(held < LIMIT * 3, "{sent:?}: {held:?}");
    }
    // a whole preface and an empty SETTINGS frame, then nothing: an HTTP/2 connection that
    // never sends a request is closed at the same limit
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let (_, held) = held_after(lb.addr, &preface).await;
    assert!(held >= LIMIT - Duration::from_millis(150), "{held:?}");
    assert!(held < LIMIT * 3, "{held:?}");
}

/// A server whose answers take `delay`, with keep-alive limit `keep_alive`, and a
/// prior-knowledge HTTP/2 client connection to it: the sender, and the connection's task,
/// which ends when the server closes the connection.
async fn h2_to_server(
    keep_alive: Duration,
    delay: Duration,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    use tower_balancer_proxy::serve::{ServeConfig, Server};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServeConfig::new().keep_alive_timeout(keep_alive);
    let server = Server::from_listener(listener, config);
    let addr = server.local_addr().unwrap();
    let stack = tower::service_fn(
        move |_req: http::Request<tower_balancer_proxy::serve::ClientBody>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
        },
    );
    tokio::spawn(server.serve(stack, std::future::pending()));
    let sock = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(sock),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

fn h2_get() -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get("http://lb.test/")
        .body(http_body_util::Empty::new())
        .unwrap()
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_the_keep_alive_limit() {
    let keep_alive = Duration::from_millis(400);
    let (mut send, conn) = h2_to_server(keep_alive, Duration::ZERO).await;
    let res = send.send_request(h2_get()).await.unwrap();
    assert_eq!(res.status(), 200);
    let answered = Instant::now();
    drop(res);
    // the connection ends when the server closes it; it was held for ever before
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("an idle HTTP/2 connection was held past 5 s")
        .unwrap()
        .ok();
    let held = answered.elapsed();
    assert!(held >= keep_alive - Duration::from_millis(100), "{held:?}");
}

#[tokio::test]
async fn an_http2_answer_slower_than_the_keep_alive_limit_still_arrives() {
    // the answer takes twice the limit, and the client sends nothing meanwhile: the
    // connection must neither close under the request nor lose the answer as it goes out
    let keep_alive = Duration::from_millis(300);
    let (mut send, _conn) = h2_to_server(keep_alive, keep_alive * 2).await;
    let res = tokio::time::timeout(Duration::from_secs(5), send.send_request(h2_get()))
        .await
        .expect("no answer")
        .expect("the connection closed under a slow answer");
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"ok");
}

#[tokio::test]
async fn requests_refused_before_the_stack_are_counted_by_reason() {
    let (member, seen) = echo_member().await;
    let lb = lb(
        &[member],
        "header_read_timeout = \"600ms\"",
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    // not HTTP: hyper answers 400 before the stack sees anything
    let (out, _) = held_after(lb.addr, b"GET / HTTP/1.1\r\nHost lb.test\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // a field over the head limit (64 KiB by default): 431
    let big = format!(
        "GET / HTTP/1.1\r\nHost: lb.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(80 * 1024)
    );
    let (out, _) = held_after(lb.addr, big.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    // half a head, then nothing: 408
    let (out, _) = held_after(lb.addr, b"GET / HTTP/1.1\r\nHost: lb").await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused request reached the member"
    );
    let metrics = harness::metrics(&lb).await;
    for reason in ["malformed", "too_large", "timeout"] {
        let line = format!("lb_client_requests_refused_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn answers_are_counted_by_status_class_once_a_request_whatever_the_attempts() {
    // a member answering by path: the status its path names, or a close with no answer
    let member = harness::member(|mut sock| async move {
        let Some(head) = harness::read_request_head(&mut sock).await else {
            return;
        };
        let status = match head.split(' ').nth(1).unwrap_or("") {
            "/moved" => "301 Moved Permanently\r\nLocation: /ok",
            "/missing" => "404 Not Found",
            "/busy" => "503 Service Unavailable",
            "/close" => return,
            _ => "200 OK",
        };
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = sock.write_all(answer.as_bytes()).await;
    })
    .await;
    let lb = lb(&[member], "", "", "[manager]\nlisten = \"127.0.0.1:0\"\n").await;
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n");
    let mut statuses = Vec::new();
    for path in ["/ok", "/ok", "/moved", "/missing", "/busy", "/close"] {
        let out = harness::raw(lb.addr, get(path).as_bytes(), Duration::from_secs(10)).await;
        statuses.push(out.get(9..12).unwrap_or("").to_owned());
    }
    // a head with no Host: the server's own 400, before the stack
    let out = harness::raw(lb.addr, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(5)).await;
    statuses.push(out.get(9..12).unwrap_or("").to_owned());
    // the close is retried on the member and then answered 502 once
    assert_eq!(
        statuses,
        ["200", "200", "301", "404", "503", "502", "400"],
        "the answers"
    );
    let metrics = harness::metrics(&lb).await;
    for (class, n) in [("1xx", 0), ("2xx", 2), ("3xx", 1), ("4xx", 1), ("5xx", 2)] {
        let line = format!("lb_client_responses_total{{code=\"{class}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // the 400 is the server's, before the stack: with the other refusals, as no access-log
    // line has it
    let line = "lb_client_requests_refused_total{reason=\"framing\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}
