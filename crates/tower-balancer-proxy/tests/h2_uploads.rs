//! Uploads streaming to members over one HTTP/2 connection are limited in number, from the
//! balancer built from a file. Each request whose body is still coming holds a member
//! connection for as long as its client takes to send it; before the limit, five
//! connections of 200 streams, each sending a byte every 2 s, held 1,030 descriptors. Now
//! at most `server.http2_max_uploads` (16 by default) stream at once; the body of one past
//! them is read whole first, and when it is not whole within 4 MiB and the header-read
//! timeout the stream is reset `REFUSED_STREAM`, unprocessed, for its client to send again.
//! A burst of small `POST`s, whose bodies come with their heads, is never refused; requests
//! without a body are not counted.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "h2/raw.rs"]
mod raw;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A request body whose chunks come from a channel, ending when the sender is dropped.
struct Upload(mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A member that reads each request's whole body, then answers with its length.
async fn counting_member() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let body = req.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(
                    body.len().to_string(),
                ))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc),
            );
        }
    });
    format!("http://{addr}")
}

/// What an HTTP/2 request came to: the status and body, or the stream's reset reason.
type Outcome = Result<(u16, String), Option<h2::Reason>>;

/// Sends `req` on `send`, in a task.
fn ask(send: &SendRequest<Body>, req: Request<Body>) -> tokio::task::JoinHandle<Outcome> {
    let mut send = send.clone();
    tokio::spawn(async move {
        send.ready().await.unwrap();
        let res = match send.send_request(req).await {
            Ok(res) => res,
            Err(e) => {
                let h2 = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<h2::Error>());
                return Err(h2.and_then(h2::Error::reason));
            }
        };
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

/// Starts a `POST` on `send` whose body begins with `first` and goes on until the returned
/// sender sends more or is dropped.
fn upload(
    send: &SendRequest<Body>,
    first: &'static str,
) -> (
    mpsc::UnboundedSender<Bytes>,
    tokio::task::JoinHandle<Outcome>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Bytes::from_static(first.as_bytes())).unwrap();
    let req = Request::post("http://lb.test/upload")
        .body(Upload(rx).boxed())
        .unwrap();
    (tx, ask(send, req))
}

/// A `GET`, without a body.
fn get(send: &SendRequest<Body>) -> tokio::task::JoinHandle<Outcome> {
    let req = Request::get("http://lb.test/")
        .body(http_body_util::Empty::new().boxed())
        .unwrap();
    ask(send, req)
}

/// Waits for `task`, 5 s at most.
async fn outcome(task: tokio::task::JoinHandle<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("no outcome in 5 s")
        .unwrap()
}

/// Starts `n` uploads on `send` and gives the balancer time to admit them.
async fn open_uploads(
    send: &SendRequest<Body>,
    n: usize,
) -> Vec<(
    mpsc::UnboundedSender<Bytes>,
    tokio::task::JoinHandle<Outcome>,
)> {
    let open: Vec<_> = (0..n).map(|_| upload(send, "ab")).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, task) in &open {
        assert!(!task.is_finished(), "an upload under way was answered");
    }
    open
}

/// A balancer from a file with `server` lines and a manager, in front of
/// [`counting_member`], and an HTTP/2 connection to it.
async fn lb_and_client(server: &str) -> (harness::Lb, SendRequest<Body>) {
    let lb = harness::lb(
        &[counting_member().await],
        server,
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let send = harness::h2_client(lb.addr).await;
    (lb, send)
}

/// Asserts the balancer's count of uploads refused.
async fn assert_refused(lb: &harness::Lb, n: u64) {
    let m = harness::metrics(lb).await;
    let line = format!("lb_client_requests_refused_total{{reason=\"uploads\"}} {n}");
    assert!(m.contains(&line), "{line} in\n{m}");
}

#[tokio::test]
async fn an_upload_past_the_limit_not_whole_in_time_is_refused_unprocessed() {
    let (lb, send) = lb_and_client("http2_max_uploads = 2\nheader_read_timeout = \"1s\"").await;
    let mut open = open_uploads(&send, 2).await;
    // a third upload that does not end: refused, once the header-read timeout has passed,
    // before any of it reached a member, with the reason that says so
    let start = std::time::Instant::now();
    let (_tx, third) = upload(&send, "ab");
    assert_eq!(outcome(third).await, Err(Some(h2::Reason::REFUSED_STREAM)));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    // one past the limit that is whole at once goes through, read whole first
    let (tx, whole) = upload(&send, "abcde");
    drop(tx);
    assert_eq!(outcome(whole).await, Ok((200, "5".to_owned())));
    // one longer than 4 MiB is refused, though whole at once
    let (tx, long) = upload(&send, "ab");
    tx.send(Bytes::from(vec![b'x'; 4 * 1024 * 1024])).unwrap();
    drop(tx);
    assert_eq!(outcome(long).await, Err(Some(h2::Reason::REFUSED_STREAM)));
    // a request without a body is not an upload
    assert_eq!(outcome(get(&send)).await, Ok((200, "0".to_owned())));
    // the first ends: answered whole, and its slot streams the next
    let (tx, first) = open.remove(0);
    tx.send(Bytes::from_static(b"c")).unwrap();
    drop(tx);
    assert_eq!(outcome(first).await, Ok((200, "3".to_owned())));
    let (tx, streams) = upload(&send, "ab");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tx.send(Bytes::from_static(b"cd")).unwrap();
    drop(tx);
    assert_eq!(outcome(streams).await, Ok((200, "4".to_owned())));
    // the second, still open, was never disturbed
    let (tx, second) = open.remove(0);
    drop(tx);
    assert_eq!(outcome(second).await, Ok((200, "2".to_owned())));
    assert_refused(&lb, 2).await;
}

/// A `POST /upload` of `lb.test` on `stream` with `data`, its body still to come.
fn post_open(stream: u32, data: &[u8]) -> Vec<u8> {
    // :method POST, :scheme http, :path (literal), :authority lb.test (literal)
    let mut block = vec![0x83, 0x86, 0x04, 7];
    block.extend_from_slice(b"/upload");
    block.extend_from_slice(&[0x01, 7]);
    block.extend_from_slice(b"lb.test");
    let mut f = raw::frame_head(block.len(), 0x1, 0x4, stream);
    f.extend(block);
    f.extend(raw::frame_head(data.len(), 0x0, 0, stream));
    f.extend_from_slice(data);
    f
}

#[tokio::test]
async fn a_client_that_cancels_an_upload_being_read_whole_is_not_refused() {
    let (lb, _) = lb_and_client("http2_max_uploads = 1\nheader_read_timeout = \"1s\"").await;
    let conn = raw::Conn::open(lb.addr, true).await;
    // the first streams; the second, past the limit, is being read whole when cancelled
    conn.send(&post_open(1, b"ab")).await.unwrap();
    conn.send(&post_open(3, b"ab")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.send(&raw::cancel([3].into_iter())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_refused(&lb, 0).await;
    // one left open past the limit is refused at the timeout
    conn.send(&post_open(5, b"ab")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_refused(&lb, 1).await;
}

#[tokio::test]
async fn a_body_that_says_it_is_too_long_is_refused_at_once() {
    let (lb, send) = lb_and_client("http2_max_uploads = 1").await;
    let _open = open_uploads(&send, 1).await;
    let (_tx, rx) = mpsc::unbounded_channel();
    let req = Request::post("http://lb.test/upload")
        .header("content-length", "4194305")
        .body(Upload(rx).boxed())
        .unwrap();
    let start = std::time::Instant::now();
    assert_eq!(
        outcome(ask(&send, req)).await,
        Err(Some(h2::Reason::REFUSED_STREAM))
    );
    // the header-read timeout is 10 s
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_refused(&lb, 1).await;
}

#[tokio::test]
async fn a_connection_reads_at_most_four_mebibytes_ahead_and_gets_them_back() {
    let (lb, send) = lb_and_client("http2_max_uploads = 1\nheader_read_timeout = \"2s\"").await;
    let _open = open_uploads(&send, 1).await;
    // seventy past the limit, 60 KiB each and not ending: sixty-eight fit in 4 MiB
    let chunk = Bytes::from(vec![b'x'; 60 * 1024]);
    let past: Vec<_> = (0..70)
        .map(|_| {
            let (tx, task) = upload(&send, "");
            tx.send(chunk.clone()).unwrap();
            (tx, task)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let done = past.iter().filter(|(_, task)| task.is_finished()).count();
    // two at least; a few more when a stream found the budget full with others part-read
    assert!((2..=4).contains(&done), "{done} refused before the timeout");
    assert_refused(&lb, done as u64).await;
    for (_tx, task) in past {
        assert_eq!(outcome(task).await, Err(Some(h2::Reason::REFUSED_STREAM)));
    }
    // all of it came back: one more past the limit is read whole and answered
    let (tx, whole) = upload(&send, "");
    tx.send(Bytes::from(vec![b'x'; 60 * 1024])).unwrap();
    drop(tx);
    assert_eq!(outcome(whole).await, Ok((200, (60 * 1024).to_string())));
}

#[tokio::test]
async fn the_front_reads_at_most_64_mebibytes_ahead_over_all_its_connections() {
    let (lb, first) = lb_and_client("http2_max_uploads = 1\nheader_read_timeout = \"6s\"").await;
    let chunk = Bytes::from(vec![b'x'; 60 * 1024]);
    // seventeen connections of 69 uploads of 60 KiB that do not end: one streams, and 68
    // are read whole, within the connection's 4 MiB: 1,156 bodies where 64 MiB holds 1,092
    let mut conns = vec![first];
    let mut past = Vec::new();
    for i in 0..17 {
        // each opened as it is used: a first request must come within the header timeout
        if i > 0 {
            conns.push(harness::h2_client(lb.addr).await);
        }
        for _ in 0..69 {
            let (tx, task) = upload(&conns[i], "");
            tx.send(chunk.clone()).unwrap();
            past.push((tx, task));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let done = past.iter().filter(|(_, task)| task.is_finished()).count();
    assert!(
        (64..=80).contains(&done),
        "{done} refused before the timeout"
    );
    // the rest read whole are refused at the timeout; then the one streaming on each
    // connection ends, and is answered
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut outcomes = Vec::new();
    for (tx, task) in past {
        drop(tx);
        outcomes.push(outcome(task).await);
    }
    let refused = outcomes
        .iter()
        .filter(|o| **o == Err(Some(h2::Reason::REFUSED_STREAM)))
        .count();
    assert_eq!(refused, 17 * 68, "{outcomes:?}");
    assert_refused(&lb, 17 * 68).await;
    // all of it came back
    let (tx, whole) = upload(&conns[0], "");
    tx.send(chunk).unwrap();
    drop(tx);
    assert_eq!(outcome(whole).await, Ok((200, (60 * 1024).to_string())));
}

#[tokio::test]
async fn one_past_the_limit_that_cannot_be_read_whole_streams_in_a_slot_come_free() {
    let (lb, send) = lb_and_client("http2_max_uploads = 1\nheader_read_timeout = \"1s\"").await;
    // not whole in time: by then the slot came free, and it streams there
    let mut open = open_uploads(&send, 1).await;
    let (slow_tx, slow) = upload(&send, "ab");
    let (tx, first) = open.remove(0);
    drop(tx);
    assert_eq!(outcome(first).await, Ok((200, "2".to_owned())));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    slow_tx.send(Bytes::from_static(b"cd")).unwrap();
    drop(slow_tx);
    assert_eq!(outcome(slow).await, Ok((200, "4".to_owned())));
    // over the connection's 4 MiB, with the slot come free: it streams, all of it
    let mut open = open_uploads(&send, 1).await;
    let (long_tx, long) = upload(&send, "ab");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tx, first) = open.remove(0);
    drop(tx);
    assert_eq!(outcome(first).await, Ok((200, "2".to_owned())));
    long_tx
        .send(Bytes::from(vec![b'x'; 4 * 1024 * 1024]))
        .unwrap();
    drop(long_tx);
    assert_eq!(
        outcome(long).await,
        Ok((200, (4 * 1024 * 1024 + 2).to_string()))
    );
    assert_refused(&lb, 0).await;
}

#[tokio::test]
async fn a_burst_of_small_posts_past_the_limit_is_answered_whole() {
    let (lb, send) = lb_and_client("http2_max_uploads = 2").await;
    let asks: Vec<_> = (0..64)
        .map(|i| {
            let body = Bytes::from(vec![b'p'; 100 + i]);
            let req = Request::post("http://lb.test/form")
                .body(Full::new(body).boxed())
                .unwrap();
            (i, ask(&send, req))
        })
        .collect();
    for (i, task) in asks {
        assert_eq!(outcome(task).await, Ok((200, (100 + i).to_string())));
    }
    assert_refused(&lb, 0).await;
}

#[tokio::test]
async fn sixteen_uploads_stream_at_once_by_default_and_every_slot_comes_back() {
    let (lb, send) = lb_and_client("header_read_timeout = \"1s\"").await;
    for round in 0..2 {
        let open = open_uploads(&send, 16).await;
        let (_tx, past) = upload(&send, "ab");
        assert_eq!(
            outcome(past).await,
            Err(Some(h2::Reason::REFUSED_STREAM)),
            "round {round}"
        );
        // half end by the sender's drop, half by a client that gives up on its request
        for (i, (tx, task)) in open.into_iter().enumerate() {
            if i % 2 == 0 {
                drop(tx);
                assert_eq!(outcome(task).await, Ok((200, "2".to_owned())));
            } else {
                task.abort();
                drop(tx);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_refused(&lb, 2).await;
}
