//! An HTTP/2 connection a limit closes is first asked to go away: the client gets a
//! `GOAWAY`, and the answers it has under way are finished (for a while) instead of lost.
//! Before, a client that tripped the paced-reset limit by cancelling much of what it asked
//! (a page of tiles left mid-load) lost every stream in flight with the socket, and could
//! not tell which had run. And a stop does not wait out its graceful timeout for an idle
//! connection whose client never answers the `PING` that goes with its `GOAWAY`.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "h2/raw.rs"]
mod raw;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raw::{cancel, frame_head, get, Conn};
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
    let metrics = harness::metrics(&lb).await;
    let line = "lb_client_connections_closed_total{reason=\"resets\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}

#[tokio::test]
async fn a_client_that_ignores_its_goaway_and_goes_on_asking_is_cut() {
    // room for more held requests than the grace allows: with the default 100, the streams
    // past it are refused before they are requests (the next test)
    let lb = harness::lb(&[member().await], "http2_max_streams = 200", "", "").await;
    // it never answers the PING, so the GOAWAY it gets names no last stream
    let conn = Conn::open(lb.addr, false).await;
    conn.send(&get(1, "/held")).await.unwrap();
    // one-byte WINDOW_UPDATEs, 13 KB at a time, until the flood limit sends a GOAWAY
    let mut update = frame_head(4, 0x8, 0, 0);
    update.extend_from_slice(&1u32.to_be_bytes());
    let batch = update.repeat(1000);
    let mut flooded = 0;
    while !conn.gone_away() && flooded < 24 << 20 {
        conn.send(&batch).await.unwrap();
        flooded += batch.len();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(conn.gone_away(), "no GOAWAY after {flooded} bytes");
    // then it stops flooding and asks on, 50 requests every 50 ms: what they carry soon
    // pays for the flood, but a client asked to go away may start only so many more
    let asked_from = Instant::now();
    let asked = ask_on(&conn, 3, 2000).await;
    let took = asked_from.elapsed();
    assert!(
        asked <= 128 + 100 && took < Duration::from_secs(2),
        "cut after {asked} requests more, {took:?} after the GOAWAY"
    );
}

#[tokio::test]
async fn a_client_that_opens_stream_after_stream_past_the_limit_is_cut() {
    let manager = "[manager]\nlisten = \"127.0.0.1:0\"\n";
    let lb = harness::lb(&[member().await], "", "", manager).await;
    let conn = Conn::open(lb.addr, true).await;
    // 50 held requests every 50 ms: the first 100 are taken, each one past them is
    // refused unprocessed, and the HTTP/2 library stops a client that goes on regardless
    let started = Instant::now();
    let asked = ask_on(&conn, 1, 4000).await;
    let took = started.elapsed();
    assert!(
        conn.closed() && asked <= 1500 && took < Duration::from_secs(3),
        "cut after {asked} requests, {took:?}"
    );
    let refused = conn
        .seen
        .lock()
        .unwrap()
        .resets
        .values()
        .filter(|&&c| c == 0x7)
        .count();
    assert!(refused >= 900, "{refused} refused");
    let metrics = harness::metrics(&lb).await;
    let line = "lb_client_connections_closed_total{reason=\"enhance_your_calm\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}

/// Asks for `/slow` 50 times every 50 ms on new streams from `next` on, until the server
/// closes the connection or `limit` requests went out: how many did.
async fn ask_on(conn: &Conn, mut next: u32, limit: usize) -> usize {
    let mut asked = 0;
    while !conn.closed() && asked < limit {
        let mut batch = Vec::new();
        for _ in 0..50 {
            batch.extend(get(next, "/slow"));
            next += 2;
        }
        if conn.send(&batch).await.is_err() {
            break;
        }
        asked += 50;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    asked
}

/// A member (hyper's server) that answers `POST /up` with the length of the body it read,
/// and holds anything else for 20 s.
async fn upload_member() -> String {
    use http_body_util::{BodyExt, Full};
    harness::member(|sock: TcpStream| async move {
        let svc =
            hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                if req.uri().path() != "/up" {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                }
                let n = req.into_body().collect().await?.to_bytes().len();
                Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(n.to_string()))))
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
            .await;
    })
    .await
}

/// A request body fed chunk by chunk.
struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

#[tokio::test]
async fn an_upload_under_way_when_the_reset_limit_trips_is_finished() {
    use http_body_util::BodyExt;
    let lb = harness::lb(
        &[upload_member().await],
        "",
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let sock = TcpStream::connect(lb.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, Boxed>(hyper_util::rt::TokioIo::new(sock))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let post = http::Request::post("http://lb.test/up")
        .body(Fed(rx).boxed())
        .unwrap();
    let up = tokio::spawn(send.send_request(post));
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    for _ in 0..16 {
        tx.send(chunk.clone()).await.unwrap();
    }
    // 150 requests cancelled (their futures dropped: RST_STREAM): the limit trips
    for _ in 0..3 {
        let round: Vec<_> = (0..50)
            .map(|_| {
                let hang = http::Request::get("http://lb.test/hang")
                    .body(http_body_util::Empty::new().boxed())
                    .unwrap();
                tokio::spawn(send.send_request(hang))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for r in round {
            r.abort();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // the rest of the upload, 4 MiB, goes after the GOAWAY, and is answered
    for _ in 0..64 {
        tx.send(chunk.clone()).await.unwrap();
    }
    drop(tx);
    let res = tokio::time::timeout(Duration::from_secs(10), up)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], (80 * 64 * 1024).to_string().as_bytes());
    let metrics = harness::metrics(&lb).await;
    let line = "lb_client_connections_closed_total{reason=\"resets\"} 1";
    assert!(
        metrics.contains(line),
        "the limit tripped: {line} in\n{metrics}"
    );
}

#[tokio::test]
async fn a_stop_closes_an_idle_http2_connection_whose_client_never_answers_its_ping() {
    use tower_balancer_proxy::serve::{ClientBody, ServeConfig, Server};
    tokio::time::timeout(Duration::from_secs(20), async {
        let ok = tower::service_fn(|_: http::Request<ClientBody>| async {
            let body = http_body_util::Full::new(Bytes::from_static(b"ok"));
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        let config = ServeConfig::new().graceful_timeout(Duration::from_secs(10));
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(ok, async move {
            let _ = stop.await;
        }));
        // a client that never answers the server's PINGs, its one request answered, and one
        // that never asked for anything (a browser's preconnect)
        let quiet = Conn::open(addr, false).await;
        let conn = Conn::open(addr, false).await;
        conn.send(&get(1, "/")).await.unwrap();
        while !conn.seen.lock().unwrap().ended.contains_key(&1) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let asked = Instant::now();
        stop_tx.send(()).unwrap();
        serving.await.unwrap().unwrap();
        // closed at the first look at it with nothing under way, not at the graceful timeout
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "the stop took {:?}",
            asked.elapsed()
        );
        assert!(conn.gone_away());
        let until = Instant::now() + Duration::from_secs(2);
        while !(conn.closed() && quiet.closed()) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(conn.closed());
        assert!(quiet.closed());
    })
    .await
    .unwrap();
}
