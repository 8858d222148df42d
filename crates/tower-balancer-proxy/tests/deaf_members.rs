//! A member that takes nothing of a request body (hung, stopped with `SIGSTOP`, reading only
//! after checks of its own): once `balancer.send_timeout` passes with nothing taken, its
//! connection is closed, whether the client is still there (it gets its answer) or has
//! gone. Before, hyper's connection task waited on the member's socket for ever: every
//! upload to a hung member kept a descriptor until the member came back or died, and a
//! client whose `POST` timed out left its member connection behind. Its own test binary:
//! it counts this process's descriptors.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A member that accepts connections and never reads from them (kept open until the test
/// ends).
async fn deaf_member() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            held.lock().unwrap().push(sock);
        }
    });
    format!("http://{addr}")
}

/// A `POST` of 64 MiB, far more than the sockets between can hold, its body written by a
/// task of its own (it never finishes): the read half, to read the answer, and the task.
async fn start_upload(
    lb: std::net::SocketAddr,
) -> (tokio::net::tcp::OwnedReadHalf, tokio::task::JoinHandle<()>) {
    let (read, mut write) = TcpStream::connect(lb).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        let head = "POST /up HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 67108864\r\n\r\n";
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..1024 {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    (read, writer)
}

/// Descriptors this process has open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Waits up to `within` for this process to have `n` descriptors open: how many it has then.
async fn descriptors_reach(n: usize, within: Duration) -> usize {
    let start = Instant::now();
    loop {
        let now = open_descriptors();
        if now == n || start.elapsed() > within {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_takes_nothing_is_cut_at_the_send_timeout_client_or_no_client() {
    let member = deaf_member().await;
    let lb = harness::lb(
        &[member],
        "",
        "timeout = \"30s\"\nsend_timeout = \"1s\"",
        "",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = open_descriptors();

    // a client that gives up: of its exchange, only the member's own socket is left (the
    // member holds it), not the balancer's connection to it
    let (read, writer) = start_upload(lb.addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.abort();
    let _ = writer.await;
    drop(read);
    let left = descriptors_reach(before + 1, Duration::from_secs(5)).await;
    assert_eq!(
        left,
        before + 1,
        "descriptors: {before} before, {left} after"
    );

    // a client that waits: its answer comes at the send timeout, not the per-try 30 s
    let (mut read, writer) = start_upload(lb.addr).await;
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut chunk))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed with no answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    let waited = start.elapsed();
    let status = String::from_utf8_lossy(&answer);
    assert!(
        status.starts_with("HTTP/1.1 502") || status.starts_with("HTTP/1.1 504"),
        "{status}"
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    writer.abort();
}
