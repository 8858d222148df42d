//! A client that reads a big answer steadily but slowly is not taken for one that stopped
//! reading. The kernel wakes a blocked writer only once a third of the socket's send buffer
//! is free, and it grows that buffer to MiBs while the client reads fast at first: a client
//! that then read 300 KB/s saw no write make progress for longer than a 2 s send timeout and
//! was cut while reading. The balancer now caps what a client socket holds unsent
//! (`TCP_NOTSENT_LOWAT`), so writes make progress as the client reads.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A member that answers every request with 64 MiB.
async fn big_member() -> String {
    harness::member(|mut sock: TcpStream| async move {
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await;
        let size = 64 << 20;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
        if sock.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            if sock.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_client_reading_a_big_answer_slowly_but_steadily_is_not_cut() {
    let lb = harness::lb(
        &[big_member().await],
        "send_timeout = \"2s\"",
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let mut client = TcpStream::connect(lb.addr).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await
        .unwrap();
    // 15 KB every 50 ms: 300 KB/s, for 7 s (three and a half send timeouts)
    let start = Instant::now();
    let mut buf = vec![0u8; 15_000];
    let mut got = 0;
    while start.elapsed() < Duration::from_secs(7) {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}, {got} bytes", start.elapsed());
        got += n;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the member's exchange is still open, and no connection was cut
    let in_flight = lb.registry.load().get("node1").unwrap().stats().in_flight();
    assert_eq!(in_flight, 1, "the exchange was cut ({got} bytes read)");
    let metrics = harness::metrics(&lb).await;
    let line = "lb_client_connections_closed_total{reason=\"send_timeout\"} 0";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}
