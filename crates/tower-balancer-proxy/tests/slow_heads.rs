//! The header-read timeout on a keep-alive connection, from the balancer built from a file:
//! every request head gets the whole limit, counted from the answer before it, whichever
//! request it is, and a head left half-sent gets 408 once that limit is up, never sooner and
//! never later than a moment after. The server keeps one timer a connection for these
//! deadlines (`serve/head_timer.rs`), armed at the first and moved lazily, so this is where
//! moving it could go wrong.
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
