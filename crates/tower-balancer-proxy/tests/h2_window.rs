//! HTTP/2 clients that give an answer no flow-control window, from the balancer built from a
//! file. hyper sends an answer's data only while the client's window has room, and with none
//! it writes nothing and stops reading the answer's body: no write stalls, so the send
//! timeout never saw it, and a client that set its window to 0 held every stream's member
//! exchange for as long as it liked. Now such a connection is closed once an answer has
//! waited the send timeout, and its members' exchanges with it; a client that reads slowly
//! but steadily, and a member that is slow itself, are not cut.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "h2/raw.rs"]
mod raw;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

const SEND: Duration = Duration::from_millis(500);

/// A member answering `GET /<n>` with `n` bytes.
async fn sized_member() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let n: usize = req.uri().path()[1..].parse().unwrap_or(0);
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(vec![b'x'; n]))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    url
}

/// A prior-knowledge HTTP/2 connection to `lb` whose streams open with `window` bytes of
/// flow-control window: the sender, and the connection's task (it ends when the balancer
/// closes the connection).
async fn h2_client(
    lb: SocketAddr,
    window: u32,
) -> (
    SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let sock = TcpStream::connect(lb).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(window)
        .handshake(TokioIo::new(sock))
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://lb.test{path}"))
        .body(Empty::new())
        .unwrap()
}

fn in_flight(lb: &harness::Lb) -> u64 {
    lb.registry.load().get("node1").unwrap().stats().in_flight()
}

/// Waits until `check` holds, for at most `limit`.
async fn until(limit: Duration, what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn balancer() -> harness::Lb {
    harness::lb(
        &[sized_member().await],
        &format!("send_timeout = \"{}ms\"", SEND.as_millis()),
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await
}

/// Opens streams that get `window` bytes of window and answers of `size` bytes, and never
/// reads them: the connection is closed after the send timeout, and the member's exchanges
/// end with it.
async fn never_read(window: u32, size: usize, streams: usize) {
    let lb = balancer().await;
    let (send, conn) = h2_client(lb.addr, window).await;
    let mut held = Vec::new();
    for _ in 0..streams {
        let mut send = send.clone();
        let answer = send.send_request(get(&format!("/{size}"))).await.unwrap();
        assert_eq!(answer.status(), 200);
        held.push(answer);
    }
    let start = Instant::now();
    if size > 65_536 {
        // the answers' heads arrived; their bodies wait on the window: the exchanges are open
        assert_eq!(in_flight(&lb), streams as u64, "window {window}");
    }
    until(SEND * 6, "the member's exchanges to end", || {
        in_flight(&lb) == 0
    })
    .await;
    let ended = tokio::time::timeout(SEND * 4, conn).await;
    assert!(
        ended.is_ok(),
        "window {window}: the connection was not closed"
    );
    let took = start.elapsed();
    assert!(
        took >= SEND - Duration::from_millis(100),
        "window {window}: {took:?}"
    );
    drop(held);
    // the balancer serves the next client
    let (mut send, _conn) = h2_client(lb.addr, 65_535).await;
    let answer = send.send_request(get("/10")).await.unwrap();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 10);
    // counted once, for what it was
    let metrics = harness::metrics(&lb).await;
    let line = "lb_client_connections_closed_total{reason=\"window\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}

#[tokio::test]
async fn a_client_that_gives_no_window_at_all_is_closed_at_the_send_timeout() {
    // the body is never asked for: hyper waits for window before the first piece
    never_read(0, 100_000, 5).await;
}

#[tokio::test]
async fn a_client_that_gives_a_short_answer_no_window_is_closed_at_the_send_timeout() {
    // the whole answer is in hand and waits for the window: the member is done with it, but
    // the connection would stay open for ever, answering nothing
    never_read(0, 10, 3).await;
}

#[tokio::test]
async fn a_client_whose_window_runs_out_is_closed_at_the_send_timeout() {
    // part of the body goes out, the rest waits
    never_read(1_000, 100_000, 1).await;
}

#[tokio::test]
async fn a_client_that_reads_slowly_but_steadily_gets_the_whole_answer() {
    let lb = balancer().await;
    // a 64 KiB window and a 200,000-byte answer, its frames (16 KiB at most) each read a
    // third of the send timeout after the last, ~2 s in all: the window moves on by more than
    // a frame in each send timeout
    let (mut send, conn) = h2_client(lb.addr, 65_536).await;
    let answer = send.send_request(get("/200000")).await.unwrap();
    let mut body = answer.into_body();
    let mut got = 0;
    while let Some(frame) = body.frame().await {
        got += frame.unwrap().into_data().map_or(0, |d| d.len());
        tokio::time::sleep(SEND / 3).await;
    }
    assert_eq!(got, 200_000);
    assert!(
        !conn.is_finished(),
        "the connection was closed under a reading client"
    );
}

/// A member that sends its answer's head and then a byte each `gap`, `n` in all.
async fn slow_member(gap: Duration, n: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..n {
                    tokio::time::sleep(gap).await;
                    if sock.write_all(b"y").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_member_slower_than_the_send_timeout_is_not_taken_for_a_client_that_does_not_read() {
    // each byte comes 1.5 send timeouts after the last: the answer waits on the member, not
    // on the client, which reads at once
    let lb = harness::lb(
        &[slow_member(SEND * 3 / 2, 3).await],
        &format!("send_timeout = \"{}ms\"", SEND.as_millis()),
        "",
        "",
    )
    .await;
    let (mut send, conn) = h2_client(lb.addr, 65_535).await;
    let answer = send.send_request(get("/")).await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), answer.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"yyy");
    assert!(!conn.is_finished());
}

#[tokio::test]
async fn a_stream_the_client_reads_does_not_keep_one_it_starves_open() {
    let lb = balancer().await;
    let (send, conn) = h2_client(lb.addr, 1_000).await;
    let read = send.clone().send_request(get("/200000")).await.unwrap();
    let starved = send.clone().send_request(get("/200000")).await.unwrap();
    assert_eq!(in_flight(&lb), 2);
    let start = Instant::now();
    // one answer is read a window at a time, a fifth of the send timeout apart; the other
    // is never read: the connection is closed, and both exchanges with it
    let reader = tokio::spawn(async move {
        let mut body = read.into_body();
        let mut got = 0;
        while let Some(Ok(frame)) = body.frame().await {
            got += frame.into_data().map_or(0, |d| d.len());
            tokio::time::sleep(SEND / 5).await;
        }
        got
    });
    until(SEND * 6, "the member's exchanges to end", || {
        in_flight(&lb) == 0
    })
    .await;
    let took = start.elapsed();
    assert!(took >= SEND - Duration::from_millis(100), "{took:?}");
    let got = reader.await.unwrap();
    assert!(got > 1_000 && got < 200_000, "the read answer: {got} bytes");
    assert!(tokio::time::timeout(SEND * 4, conn).await.is_ok());
    drop(starved);
}

#[tokio::test]
async fn a_client_granting_a_byte_of_window_at_a_time_is_closed() {
    let lb = balancer().await;
    let conn = raw::Conn::open(lb.addr, true).await;
    // streams open with a 1-byte window (SETTINGS_INITIAL_WINDOW_SIZE)
    let mut settings = raw::frame_head(6, 0x4, 0, 0);
    settings.extend_from_slice(&[0, 4, 0, 0, 0, 1]);
    settings.extend(raw::get(1, "/100000"));
    conn.send(&settings).await.unwrap();
    // a byte more each 0.8 send timeouts: some progress in every timeout, ~1 B/s
    let start = Instant::now();
    let mut update = raw::frame_head(4, 0x8, 0, 1);
    update.extend_from_slice(&1u32.to_be_bytes());
    while !conn.closed() && start.elapsed() < SEND * 8 {
        let _ = conn.send(&update).await;
        tokio::time::sleep(SEND * 8 / 10).await;
    }
    let took = start.elapsed();
    assert!(conn.closed(), "still open after {took:?}");
    assert!(took < SEND * 4, "closed after {took:?}");
    until(SEND * 4, "the member's exchange to end", || {
        in_flight(&lb) == 0
    })
    .await;
}

#[tokio::test]
async fn a_client_that_starves_a_window_and_only_later_stops_reading_is_closed_for_its_window() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lb = balancer().await;
    let (mut read, mut write) = TcpStream::connect(lb.addr).await.unwrap().into_split();
    // every stream's window 0, the connection's as large as it goes; a big answer on stream 1
    let mut start = raw::preface(0);
    start.extend(raw::get(1, "/67108864"));
    write.write_all(&start).await.unwrap();
    let asked = Instant::now();
    // everything the server sends is read for a fifth of the send timeout
    let until_then = tokio::time::Instant::now() + SEND / 5;
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout_at(until_then, read.read(&mut buf)).await {
        assert!(n > 0, "closed after {:?}", asked.elapsed());
    }
    // then a big answer on stream 3 with all the window it can use, and no more reading
    let mut open = raw::get(3, "/67108864");
    open.extend(raw::frame_head(4, 0x8, 0, 3));
    open.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    write.write_all(&open).await.unwrap();
    until(SEND * 3, "the member's exchanges to end", || {
        in_flight(&lb) == 0
    })
    .await;
    // closed when stream 1's wait on its window ran out, and counted for that: the client
    // stopped reading only later, and not for a send timeout
    let took = asked.elapsed();
    assert!(took >= SEND, "closed after {took:?}");
    let metrics = harness::metrics(&lb).await;
    harness::assert_closed(&metrics, &[("window", 1), ("send_timeout", 0)]);
    drop(read);
}

/// The server's `SETTINGS`, once its first came, after acknowledging it as a client does.
async fn server_settings(conn: &raw::Conn) -> std::collections::HashMap<u16, u32> {
    until(Duration::from_secs(5), "the server's SETTINGS", || {
        !conn.seen.lock().unwrap().settings.is_empty()
    })
    .await;
    conn.send(&raw::frame_head(0, 0x4, 0x1, 0)).await.unwrap();
    conn.seen.lock().unwrap().settings.clone()
}

#[tokio::test]
async fn one_connection_holds_at_most_its_stream_limit_of_member_exchanges() {
    // each stream whose answer waits on the window holds a member exchange: the streams a
    // connection may open bound what it can hold (hyper's own default was 200)
    let lb = balancer().await;
    let conn = raw::Conn::open(lb.addr, true).await;
    assert_eq!(server_settings(&conn).await.get(&0x3), Some(&100));

    let lb = harness::lb(
        &[sized_member().await],
        "http2_max_streams = 3\nsend_timeout = \"5s\"",
        "",
        "",
    )
    .await;
    let conn = raw::Conn::open(lb.addr, true).await;
    assert_eq!(server_settings(&conn).await.get(&0x3), Some(&3));
    // no window for any stream's answer, then four big answers asked for
    let mut start = raw::frame_head(6, 0x4, 0, 0);
    start.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
    conn.send(&start).await.unwrap();
    for stream in [1, 3, 5, 7] {
        conn.send(&raw::get(stream, "/100000")).await.unwrap();
    }
    until(
        Duration::from_secs(5),
        "the fourth stream's refusal",
        || conn.seen.lock().unwrap().resets.get(&7) == Some(&0x7),
    )
    .await;
    until(Duration::from_secs(5), "three exchanges", || {
        in_flight(&lb) == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        in_flight(&lb),
        3,
        "the refused stream never reached a member"
    );
    let resets = conn.seen.lock().unwrap().resets.clone();
    assert_eq!(resets.len(), 1, "{resets:?}");
}
