//! What the access log says of requests through the whole balancer built from a file, where
//! the log's own unit tests cannot look: the lines of requests whose client gave up while a
//! member held them (nginx's 499) name that member and the attempts, so the log of a "member
//! hangs, clients give up" incident says which member hung.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::{lb, member, read_request_head};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The log's lines once it has `n` of them, waiting up to 10 s (the writer is a task).
async fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A member that reads a request and never answers.
async fn hung_member() -> String {
    member(|mut sock| async move {
        if read_request_head(&mut sock).await.is_some() {
            std::future::pending::<()>().await;
        }
    })
    .await
}

/// A balancer over `members` with its access log in a file of its own (`test` names it).
async fn logged(members: &[String], test: &str) -> (harness::Lb, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("{test}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = format!("access_log = \"{}\"", path.display());
    (lb(members, &server, "", "").await, path)
}

/// Sends `head` on a new connection and closes it after `wait`, with no answer read.
async fn give_up(lb: &harness::Lb, head: &[u8], wait: Duration) {
    let mut client = TcpStream::connect(lb.addr).await.unwrap();
    client.write_all(head).await.unwrap();
    tokio::time::sleep(wait).await;
}

#[tokio::test]
async fn a_client_that_gives_up_on_a_hung_member_gets_a_499_line_naming_it() {
    let (lb, path) = logged(&[hung_member().await], "access-499").await;
    // the client waits half a second, then closes its connection
    let get = b"GET /slow HTTP/1.1\r\nHost: lb.test\r\n\r\n";
    give_up(&lb, get, Duration::from_millis(500)).await;
    let lines = lines(&path, 1).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.contains("\"GET /slow HTTP/1.1\" 499 "), "{line}");
    assert!(line.contains(" member=node1 attempts=1 "), "{line}");
}

#[tokio::test]
async fn a_499_after_failover_counts_every_attempt_and_names_the_last_member() {
    // node1 closes on every request (retried), node2 never answers
    let closes = member(|mut sock| async move {
        let _ = read_request_head(&mut sock).await;
    })
    .await;
    let (lb, path) = logged(&[closes, hung_member().await], "access-499-fo").await;
    // two requests in turn: round robin starts one on each member
    for _ in 0..2 {
        let get = b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n";
        give_up(&lb, get, Duration::from_millis(400)).await;
    }
    let lines = lines(&path, 2).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let mut attempts: Vec<&str> = lines
        .iter()
        .map(|l| {
            assert!(l.contains("\" 499 ") && l.contains(" member=node2 "), "{l}");
            l.split(" attempts=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    attempts.sort_unstable();
    // the one that began on node1 was sent twice; the other went to node2 at once
    assert_eq!(attempts, ["1", "2"], "{lines:?}");
}

/// A member that answers a connection's first request and meets a later one, `hold` after
/// it arrived, with a close and no answer: at once, its keep-alive timeout racing the
/// request; later, a member failing requests on reused connections.
async fn drops_reused(hold: Duration) -> String {
    member(move |mut sock| async move {
        if read_request_head(&mut sock).await.is_none() {
            return;
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if sock.write_all(ok).await.is_ok() && read_request_head(&mut sock).await.is_some() {
            tokio::time::sleep(hold).await;
        }
    })
    .await
}

/// `n` GETs one after another, each on a connection of its own, each answered 200.
async fn gets(lb: &harness::Lb, n: usize) {
    for _ in 0..n {
        let get = b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n";
        let answer = harness::raw(lb.addr, get, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
}

/// The sum of `node1`'s series of the `/metrics` family `name` (every kind of a family
/// with kinds).
fn node1_series(metrics: &str, name: &str) -> u64 {
    let values: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains("member=\"node1\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(!values.is_empty(), "{name} for node1 in\n{metrics}");
    values.iter().sum()
}

const MANAGER: &str = "[manager]\nlisten = \"127.0.0.1:0\"\n";

#[tokio::test]
async fn a_request_resent_after_a_keep_alive_race_is_two_attempts_and_no_failure() {
    let path = std::env::temp_dir().join(format!("access-race-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = format!("access_log = \"{}\"", path.display());
    let lb = lb(&[drops_reused(Duration::ZERO).await], &server, "", MANAGER).await;
    // the second request meets the pooled connection closing, and goes out on a new one
    gets(&lb, 2).await;
    let lines = lines(&path, 2).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(" 200 2 ") && lines[0].contains(" member=node1 attempts=1 "));
    assert!(
        lines[1].contains(" 200 2 ") && lines[1].contains(" member=node1 attempts=2 "),
        "{lines:?}"
    );
    let metrics = harness::metrics(&lb).await;
    assert_eq!(node1_series(&metrics, "lb_member_resends_total"), 1);
    assert_eq!(node1_series(&metrics, "lb_member_failures_total"), 0);
    // and the manager's JSON view
    let m = lb.manager.unwrap();
    let ask =
        format!("GET /balancer-manager?json HTTP/1.1\r\nHost: {m}\r\nConnection: close\r\n\r\n");
    let view = harness::raw(m, ask.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        view.contains("\"failures\": 0,") && view.contains("\"resends\": 1,"),
        "{view}"
    );
}

#[tokio::test]
async fn a_client_giving_up_after_a_resend_gets_a_499_counting_both_sends() {
    // reused connections are dropped at once; a new one is answered after 1.5 s
    let node1 = member(|mut sock| async move {
        if read_request_head(&mut sock).await.is_none() {
            return;
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if !FIRST.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        if sock.write_all(ok).await.is_ok() {
            let _ = read_request_head(&mut sock).await;
        }
    })
    .await;
    static FIRST: AtomicBool = AtomicBool::new(true);
    let (lb, path) = logged(&[node1], "access-499-resent").await;
    gets(&lb, 1).await;
    // the pooled connection is dropped under it: sent again, and given up on meanwhile
    let get = b"GET /again HTTP/1.1\r\nHost: lb.test\r\n\r\n";
    give_up(&lb, get, Duration::from_millis(600)).await;
    let lines = lines(&path, 2).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let line = &lines[1];
    assert!(line.contains("\"GET /again HTTP/1.1\" 499 "), "{line}");
    assert!(line.contains(" member=node1 attempts=2 "), "{line}");
}

#[tokio::test]
async fn a_member_holding_a_request_on_a_reused_connection_then_closing_failed_it() {
    let path = std::env::temp_dir().join(format!("access-held-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = format!("access_log = \"{}\"", path.display());
    let node2 = harness::raw_member(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let members = [drops_reused(Duration::from_millis(300)).await, node2];
    let lb = lb(&members, &server, "", MANAGER).await;
    // in turn: node1's second request is on its pooled connection, held, then closed on
    gets(&lb, 4).await;
    let lines = lines(&path, 4).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(lines.len(), 4, "{lines:?}");
    // it went to node2 by failover, not again to node1 behind its back
    let failed_over = lines
        .iter()
        .filter(|l| l.contains(" member=node2 attempts=2 "))
        .count();
    assert_eq!(failed_over, 1, "{lines:?}");
    let metrics = harness::metrics(&lb).await;
    let reset = "lb_member_failures_total{balancer=\"b\",member=\"node1\",kind=\"reset\"} 1";
    assert!(metrics.contains(reset), "{reset} in\n{metrics}");
    assert_eq!(node1_series(&metrics, "lb_member_resends_total"), 0);
}

/// A balancer over `member` with its access log at `log` and `grace` to drain, served until
/// the returned sender is used; the task ends when `serve` returns.
async fn stoppable(
    member: &str,
    log: &std::path::Path,
    grace: &str,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), tower_balancer_proxy::config::BindError>>,
) {
    let _ = std::fs::remove_file(log);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
         access_log = \"{}\"\ngraceful_timeout = \"{grace}\"\n\
         [balancer]\nname = \"b\"\n[[balancer.member]]\nurl = \"{member}\"\nroute = \"node1\"\n",
        log.display(),
    );
    let config =
        tower_balancer_proxy::config::ConfigFile::from_toml(&text, std::path::Path::new("lb.toml"))
            .unwrap();
    let bound = config.build().unwrap().bind().await.unwrap();
    let addr = bound.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    (addr, stop, serving)
}

/// A request still under way when the graceful timeout runs out: its client gets no answer,
/// and the log says so with 444 (the server closed it), not 499 (the client went away), over
/// the server's own HTTP/1.1 path and over HTTP/2 (whose streams hyper runs on tasks of
/// their own), before `serve` returns and the log's writer finishes.
#[tokio::test]
async fn requests_cut_by_the_graceful_timeout_are_logged_as_444() {
    let path = std::env::temp_dir().join(format!("access-444-{}.log", std::process::id()));
    let (addr, stop, serving) = stoppable(&hung_member().await, &path, "300ms").await;
    // one request over HTTP/1.1, one over HTTP/2 (prior knowledge), both held by the member
    let mut h1 = TcpStream::connect(addr).await.unwrap();
    h1.write_all(b"GET /h1 HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await
        .unwrap();
    let sock = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(sock))
            .await
            .unwrap();
    tokio::spawn(conn);
    let get = http::Request::get("http://lb.test/h2")
        .body(http_body_util::Empty::new())
        .unwrap();
    let h2 = tokio::spawn(send.send_request(get));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    // `serve` returns once the cut requests' lines are written: no waiting on the file
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve returns after the graceful timeout")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("\"GET /h1 HTTP/1.1\" 444 0 "), "{text}");
    assert!(lines[1].contains("\"GET /h2 HTTP/2.0\" 444 0 "), "{text}");
    for line in lines {
        assert!(line.contains(" member=node1 attempts=1 "), "{line}");
    }
    // neither client got an answer
    assert!(h2.await.unwrap().is_err());
    let mut rest = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut h1, &mut rest).await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

/// An answer still streaming when the graceful timeout runs out keeps its status, and its
/// line says it was cut (`cut=1`), with the bytes the client got.
#[tokio::test]
async fn an_answer_cut_by_the_graceful_timeout_is_marked_cut() {
    let streaming = member(|mut sock| async move {
        if read_request_head(&mut sock).await.is_some() {
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
            let _ = sock.write_all(head.as_bytes()).await;
            std::future::pending::<()>().await;
        }
    })
    .await;
    let path = std::env::temp_dir().join(format!("access-cut-{}.log", std::process::id()));
    let (addr, stop, serving) = stoppable(&streaming, &path, "200ms").await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /download HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await
        .unwrap();
    // the head and the first chunk reach the client
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("hello") {
        let n = tokio::io::AsyncReadExt::read(&mut client, &mut buf)
            .await
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("\"GET /download HTTP/1.1\" 200 5 "),
        "{text}"
    );
    assert!(lines[0].contains(" cut=1"), "{text}");
}
