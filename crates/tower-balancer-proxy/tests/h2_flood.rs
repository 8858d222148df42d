//! HTTP/2 clients that send frames asking for nothing, from the balancer built from a file.
//! A one-byte `WINDOW_UPDATE` flood on a connection with a stream open ran for as long as
//! the client liked (4.2 GB in 40 s in a hostile test); now a connection that reads far more
//! than its requests carried is closed, while an upload and a long run of requests on one
//! connection, which carry what they send, are not.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "h2/raw.rs"]
mod raw;

use raw::{cancel, frame_head, get, Conn};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A member that takes a request, writes `first`, and then nothing for 20 s: the stream
/// stays open.
async fn stalling_member(first: &'static [u8]) -> String {
    harness::member(move |mut sock: TcpStream| async move {
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await;
        let _ = sock.write_all(first).await;
        tokio::time::sleep(Duration::from_secs(20)).await;
    })
    .await
}

/// A member that answers nothing.
async fn hanging_member() -> String {
    stalling_member(b"").await
}

/// A member that sends its answer's head and one byte of its body.
async fn trickle_member() -> String {
    stalling_member(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nx").await
}

/// Opens a prior-knowledge HTTP/2 connection (preface, empty SETTINGS) and, with
/// `request`, a `GET /` on stream 1 left open; then sends `frame` (a one-byte
/// WINDOW_UPDATE on the connection, a PING), 1,000 to a write, until a write fails or
/// 24 MiB went: the bytes sent, and how long it took.
async fn flood(lb: SocketAddr, request: bool, frame: &[u8]) -> (usize, Duration) {
    let mut s = TcpStream::connect(lb).await.unwrap();
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame_head(0, 0x4, 0, 0));
    if request {
        // :method GET, :scheme http, :path /, :authority lb.test (HPACK)
        let block = [&[0x82, 0x86, 0x84, 0x41, 7][..], b"lb.test"].concat();
        start.extend(frame_head(block.len(), 0x1, 0x5, 1));
        start.extend(block);
    }
    s.write_all(&start).await.unwrap();
    let batch = frame.repeat(1000);
    let began = Instant::now();
    let mut sent = 0;
    // the server's frames are read meanwhile, so its writes never hold it up
    let (mut read, mut write) = s.into_split();
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    while sent < 24 << 20 && began.elapsed() < Duration::from_secs(20) {
        if write.write_all(&batch).await.is_err() {
            break;
        }
        sent += batch.len();
    }
    drain.abort();
    (sent, began.elapsed())
}

#[tokio::test]
async fn a_window_update_or_ping_flood_is_closed_with_a_stream_open_or_none() {
    let lb = harness::lb(&[hanging_member().await], "", "", "").await;
    let mut update = frame_head(4, 0x8, 0, 0);
    update.extend_from_slice(&1u32.to_be_bytes());
    // the server answers each PING with one as long: its answers are no payload to pay for
    // more of them (they were, and a PING flood ran ~twice as far)
    let mut ping = frame_head(8, 0x6, 0, 0);
    ping.extend_from_slice(&[7; 8]);
    for (kind, frame) in [("WINDOW_UPDATE", update), ("PING", ping)] {
        for request in [true, false] {
            let (sent, took) = flood(lb.addr, request, &frame).await;
            // 8 MiB, 2 MiB more after the GOAWAY, and what the kernel's buffers hold
            assert!(
                sent < 16 << 20,
                "{kind}, request {request}: {sent} bytes went in {took:?}"
            );
        }
    }
    // the next client is served
    let (member, _) = harness::echo_member().await;
    let lb = harness::lb(&[member], "", "", "").await;
    let (mut send, _conn) = h2(lb.addr).await;
    let res = send.send_request(post(0)).await.unwrap();
    assert_eq!(res.status(), 200);
}

async fn h2(
    lb: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let sock = TcpStream::connect(lb).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(sock))
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

fn post(n: usize) -> Request<Full<Bytes>> {
    Request::post("http://lb.test/up")
        .body(Full::new(Bytes::from(vec![b'u'; n])))
        .unwrap()
}

#[tokio::test]
async fn an_upload_and_thousands_of_requests_on_one_connection_are_not_a_flood() {
    let (member, _) = harness::echo_member().await;
    let lb = harness::lb(&[member], "", "", "").await;
    let (mut send, conn) = h2(lb.addr).await;
    // 24 MiB up: three times the allowance, all of it payload
    let res = send.send_request(post(24 << 20)).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(&(24usize << 20).to_string()), "{text}");
    // 3,000 small requests: their heads are small on the wire, and payload all the same
    for _ in 0..3000 {
        let res = send
            .send_request(
                Request::get("http://lb.test/x")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
    assert!(!conn.is_finished());
}

#[tokio::test]
async fn streams_opened_and_reset_at_a_pace_close_the_connection() {
    paced_resets(hanging_member().await, 100, 0).await;
}

#[tokio::test]
async fn refused_requests_do_not_pad_paced_resets() {
    // 60 requests refused with 400 a round, beside the 50 reset: they reach no member, and
    // count for nothing in the share of requests abandoned
    paced_resets(hanging_member().await, 100, 60).await;
}

#[tokio::test]
async fn streams_reset_after_their_answers_began_count_as_abandoned() {
    // their answers' heads and first bytes have come when they are reset, mid-body
    paced_resets(trickle_member().await, 300, 0).await;
}

/// Opens 50 streams to `member` a round (and `padding` requests the balancer refuses),
/// resets the 50 `wait_ms` later, and answers none of the server's `PING`s: the connection
/// is asked to go away (a `GOAWAY`) after 128 to 250 of them, and, as the client goes on,
/// closed within 128 requests more (and a round's worth of slack).
async fn paced_resets(member: String, wait_ms: u64, padding: usize) {
    let lb = harness::lb(&[member], "", "", "").await;
    let conn = Conn::open(lb.addr, false).await;
    let refused = [&[0x82, 0x86, 0x84, 0x01, 9][..], b"lb.test:0"].concat();
    let (mut next, mut opened, mut sent) = (1u32, 0, 0);
    let mut at_goaway = None;
    for round in 0..16 {
        // 50 requests, each taken by the balancer (and sent to the member) before its reset
        let first = next;
        let mut batch = Vec::new();
        for _ in 0..50 {
            batch.extend(get(next, "/"));
            next += 2;
        }
        let last = next;
        for _ in 0..padding {
            batch.extend(frame_head(refused.len(), 0x1, 0x5, next));
            batch.extend_from_slice(&refused);
            next += 2;
        }
        if conn.send(&batch).await.is_err() {
            break;
        }
        sent += 50 + padding;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        if conn.send(&cancel((first..last).step_by(2))).await.is_err() {
            break;
        }
        opened += 50;
        tokio::time::sleep(Duration::from_millis(if round == 1 { 300 } else { 100 })).await;
        if round == 1 {
            // 100 abandoned: a client may cancel that many
            assert!(!conn.gone_away() && !conn.closed());
        }
        if at_goaway.is_none() && conn.gone_away() {
            at_goaway = Some((opened, sent));
        }
        if conn.closed() {
            break;
        }
    }
    let (opened_then, sent_then) = at_goaway.expect("a GOAWAY");
    assert!(
        (128..=250).contains(&opened_then),
        "the GOAWAY came after {opened_then} streams opened and reset"
    );
    assert!(conn.closed(), "still open after {opened} streams");
    assert!(
        sent - sent_then <= 128 + 2 * (50 + padding),
        "closed after {} requests more",
        sent - sent_then
    );
}

/// HPACK's integer with a 7-bit prefix (`flags` in the prefix's high bit).
fn hpack_len(flags: u8, n: usize) -> Vec<u8> {
    if n < 127 {
        return vec![flags | n as u8];
    }
    let mut out = vec![flags | 0x7f];
    let mut rest = n - 127;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
    out
}

#[tokio::test]
async fn a_flood_paid_for_with_refused_requests_naming_big_stored_fields_is_closed() {
    let (member, seen) = harness::echo_member().await;
    let lb = harness::lb(&[member], "", "", "").await;
    let s = TcpStream::connect(lb.addr).await.unwrap();
    let (mut read, mut write) = s.into_split();
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame_head(0, 0x4, 0, 0));
    // :method GET, :scheme http, :path /, :authority lb.test:0 (not indexed: a 400)
    let refused = [&[0x82, 0x86, 0x84, 0x01, 9][..], b"lb.test:0"].concat();
    // the first request stores a 4,000-byte field in HPACK's table (literal, indexed)
    let mut first = refused.clone();
    first.push(0x40);
    first.extend(hpack_len(0, 5));
    first.extend_from_slice(b"x-big");
    first.extend(hpack_len(0, 4000));
    first.extend(vec![b'b'; 4000]);
    start.extend(frame_head(first.len(), 0x1, 0x5, 1));
    start.extend(first);
    write.write_all(&start).await.unwrap();
    // each later one names it four times in four bytes: 16 KB of fields for ~20 bytes
    let cheap = [&refused[..], &[0xbe; 4]].concat();
    let mut update = frame_head(4, 0x8, 0, 0);
    update.extend_from_slice(&1u32.to_be_bytes());
    let junk = update.repeat(10_000);
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let (mut sent, mut id) = (0usize, 3u32);
    let began = Instant::now();
    while sent < 24 << 20 && began.elapsed() < Duration::from_secs(20) {
        let mut round = frame_head(cheap.len(), 0x1, 0x5, id);
        round.extend_from_slice(&cheap);
        round.extend_from_slice(&junk);
        id += 2;
        if write.write_all(&round).await.is_err() {
            break;
        }
        sent += round.len();
    }
    drain.abort();
    assert!(
        sent < 16 << 20,
        "{sent} bytes went in {:?}",
        began.elapsed()
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused request reached the member"
    );
}

#[tokio::test]
async fn a_connection_hypers_http2_ends_for_its_own_limits_is_counted() {
    let lb = harness::lb(
        &[hanging_member().await],
        "",
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let conn = Conn::open(lb.addr, true).await;
    // a POST on stream 1 (:method POST, :scheme http, :path /, :authority lb.test), its
    // body left open, then 101 empty DATA frames on it: one past the HTTP/2 library's limit
    let block = [&[0x83, 0x86, 0x84, 0x41, 7][..], b"lb.test"].concat();
    let mut bytes = frame_head(block.len(), 0x1, 0x4, 1);
    bytes.extend(block);
    for _ in 0..101 {
        bytes.extend(frame_head(0, 0x0, 0, 1));
    }
    conn.send(&bytes).await.unwrap();
    let line = "lb_client_connections_closed_total{reason=\"enhance_your_calm\"} 1";
    let start = Instant::now();
    let mut metrics = harness::metrics(&lb).await;
    while !metrics.contains(line) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{line} in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = harness::metrics(&lb).await;
    }
    // the client was told why: GOAWAY with ENHANCE_YOUR_CALM (0xb)
    let goaways = conn.seen.lock().unwrap().goaways.clone();
    assert!(
        goaways.iter().any(|&(_, _, code)| code == 0xb),
        "{goaways:?}"
    );
    // and nothing else was counted for it
    let none = [
        ("flood", 0),
        ("resets", 0),
        ("window", 0),
        ("send_timeout", 0),
    ];
    harness::assert_closed(&metrics, &none);
}
