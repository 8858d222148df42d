//! An HTTP/2 connection a limit closes is first asked to go away: the client gets a
//! `GOAWAY`, and the answers it has under way are finished (for a while) instead of lost.
//! Before, a client that tripped the paced-reset limit by cancelling much of what it asked
//! (a page of tiles left mid-load) lost every stream in flight with the socket, and could
//! not tell which had run.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "h2/raw.rs"]
mod raw;

use std::time::{Duration, Instant};

use raw::{cancel, get, Conn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A member that answers `/slow` after 1.5 s and holds anything else for 20 s.
async fn member() -> String {
    harness::member(|mut sock: TcpStream| async move {
        let mut buf = [0u8; 4096];
        let n = sock.read(&mut buf).await.unwrap_or(0);
        if buf[..n].starts_with(b"GET /slow ") {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow";
            let _ = sock.write_all(answer).await;
        }
        tokio::time::sleep(Duration::from_secs(20)).await;
    })
    .await
}

#[tokio::test]
async fn a_client_past_the_reset_limit_gets_a_goaway_and_its_answers_under_way() {
    let lb = harness::lb(
        &[member().await],
        "",
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    // a client that answers PINGs, as client libraries do
    let conn = Conn::open(lb.addr, true).await;
    // under way when the limit trips: one the member answers, one it never does
    let mut start = get(1, "/slow");
    start.extend(get(3, "/held"));
    conn.send(&start).await.unwrap();
    // 50 requests a round, cancelled (RST_STREAM) 100 ms later, until a GOAWAY comes
    let began = Instant::now();
    let mut next = 5u32;
    let mut cancelled = 0;
    while !conn.gone_away() && cancelled < 500 {
        let first = next;
        let mut batch = Vec::new();
        for _ in 0..50 {
            batch.extend(get(next, "/hang"));
            next += 2;
        }
        conn.send(&batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.send(&cancel((first..next).step_by(2))).await.unwrap();
        cancelled += 50;
    }
    assert!(
        (128..=250).contains(&cancelled),
        "the GOAWAY came after {cancelled} streams were cancelled"
    );
    // the held request keeps the connection open past the slow answer
    let until = Instant::now() + Duration::from_secs(12);
    while !conn.closed() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = std::mem::take(&mut *conn.seen.lock().unwrap());
    let s = &seen;
    let (first_goaway, _, code) = s.goaways[0];
    assert_eq!(code, 0, "NO_ERROR");
    // once the client answered the PING: the last stream the server took, which covers
    // the two under way
    let &(_, last, _) = s.goaways.last().unwrap();
    assert!((3..next).contains(&last), "last stream {last}, of {next}");
    // the answer under way came whole, after the GOAWAY
    assert_eq!(&s.data[&1][..], b"slow");
    let ended = s.ended[&1];
    assert!(ended > first_goaway && ended - began >= Duration::from_millis(1400));
    // the held one kept the connection open until the grace ran out, five seconds on
    let closed = s.closed.expect("the connection was closed");
    let after = closed - first_goaway;
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(8)).contains(&after),
        "closed {after:?} after the GOAWAY"
    );
    let m = lb.manager.unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {m}\r\nConnection: close\r\n\r\n");
    let metrics = harness::raw(m, req.as_bytes(), Duration::from_secs(5)).await;
    let line = "lb_client_connections_closed_total{reason=\"resets\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}
