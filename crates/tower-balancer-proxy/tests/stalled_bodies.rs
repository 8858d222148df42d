//! Bodies that stall or crawl, from the balancer built from a file. A member that sends its
//! answer's head and then stalls is cut off once its body has been silent for
//! `response_body_timeout`, while a member that sends slowly but steadily is passed through
//! whole. A client that uploads slowly is not taken for a member that hangs: the per-try
//! `timeout` does not run while the member waits on the client, so a healthy member is
//! neither timed out nor ejected, and a client whose upload stalls gets 408.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{echo_member, lb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_millis(400);

/// A member that answers each request with a 100-byte body: the head and `first` bytes at
/// once, then the rest 10 bytes at a time, `gap` apart (bounded: 10 s at most).
async fn pacing_member(first: usize, gap: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                if harness::read_request_head(&mut sock).await.is_none() {
                    return;
                }
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
                out.extend_from_slice(&[b'a'; 100][..first]);
                if sock.write_all(&out).await.is_err() {
                    return;
                }
                let mut sent = first;
                while sent < 100 {
                    tokio::time::sleep(gap.min(Duration::from_secs(10))).await;
                    if sock.write_all(&[b'b'; 10]).await.is_err() {
                        return;
                    }
                    sent += 10;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Sends a GET and reads until the balancer closes (5 s at most): the bytes and how long.
async fn fetch(lb: std::net::SocketAddr) -> (Vec<u8>, Duration) {
    let mut s = TcpStream::connect(lb).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the stalled answer was held past 5 s"),
        }
    }
    (out, start.elapsed())
}

fn body_len(answer: &[u8]) -> usize {
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    answer.len() - head_end
}

#[tokio::test]
async fn a_member_silent_mid_body_is_cut_off_at_the_limit() {
    let member = pacing_member(10, Duration::from_secs(10)).await;
    let lb = lb(&[member], "", "response_body_timeout = \"400ms\"", "").await;
    let (answer, took) = fetch(lb.addr).await;
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
    // what the member sent passed; the rest never came, and the client was not held
    assert_eq!(body_len(&answer), 10);
    assert!(
        took >= LIMIT - Duration::from_millis(50),
        "cut early: {took:?}"
    );
    assert!(took < LIMIT * 5, "cut late: {took:?}");
}

#[tokio::test]
async fn a_member_sending_slowly_but_steadily_is_passed_whole() {
    // 10 bytes every 150 ms: 1.35 s in all, never 400 ms silent
    let member = pacing_member(10, Duration::from_millis(150)).await;
    let lb = lb(&[member], "", "response_body_timeout = \"400ms\"", "").await;
    let (answer, took) = fetch(lb.addr).await;
    assert_eq!(
        body_len(&answer),
        100,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took > LIMIT * 3, "{took:?}");
}

/// Sends a POST of 10 bytes, one every `gap`, and reads the answer's status line (5 s at
/// most after the last byte).
async fn upload(lb: std::net::SocketAddr, gap: Duration, bytes: usize) -> String {
    let mut s = TcpStream::connect(lb).await.unwrap();
    s.write_all(b"POST /form HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..bytes {
        tokio::time::sleep(gap).await;
        if s.write_all(b"x").await.is_err() {
            break;
        }
    }
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
        .await
        .expect("no answer to the upload")
        .unwrap_or(0);
    String::from_utf8_lossy(&out[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// The failures counted against every member so far.
fn failures(lb: &harness::Lb) -> u64 {
    lb.registry
        .load()
        .members()
        .iter()
        .map(|m| m.stats().view().failures)
        .sum()
}

#[tokio::test]
async fn a_slow_upload_reaches_a_healthy_member_and_nobody_is_blamed() {
    let (member, _) = echo_member().await;
    // the per-try limit is 1 s; the client takes 3 s, a byte every 300 ms
    let lb = lb(&[member], "", "timeout = \"1s\"", "").await;
    let status = upload(lb.addr, Duration::from_millis(300), 10).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(failures(&lb), 0, "the slow client was blamed on the member");
}

#[tokio::test]
async fn a_stalled_upload_is_the_clients_408_not_a_members_timeout() {
    let (member, _) = echo_member().await;
    // both limits 1 s: the body's idle limit must be what ends it
    let lb = lb(
        &[member],
        "request_body_timeout = \"1s\"",
        "timeout = \"1s\"",
        "",
    )
    .await;
    for _ in 0..3 {
        // five bytes of ten, then silence
        let status = upload(lb.addr, Duration::from_millis(50), 5).await;
        assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    }
    assert_eq!(
        failures(&lb),
        0,
        "a stalled client was blamed on the member"
    );
}

#[tokio::test]
async fn a_body_cut_before_any_of_it_went_out_is_logged_as_the_502_the_client_got() {
    // the member promises 100 bytes, sends none and closes: the server answers 502 instead
    let member = harness::raw_member(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").await;
    let path = std::env::temp_dir().join(format!("cut-body-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let lb = lb(
        &[member],
        &format!(
            "access_log = \"{}\"\naccess_log_format = \"json\"",
            path.display()
        ),
        "",
        "",
    )
    .await;
    // the own HTTP/1.1 path (a GET) and hyper's (a POST with a body)
    let requests: [&[u8]; 2] = [
        b"GET /a HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
        b"POST /b HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    ];
    for req in requests {
        let out = harness::raw(lb.addr, req, Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    }
    let start = Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 2 || start.elapsed() > Duration::from_secs(5) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lines: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        // the member's 200 was never sent: the line says what the client got
        assert_eq!(line["status"], 502, "{line}");
        assert_eq!(line["bytes"], "502 Bad Gateway\n".len(), "{line}");
    }
    let _ = std::fs::remove_file(&path);
}
