//! A client that reads a big answer steadily but slowly is not taken for one that stopped
//! reading. The kernel wakes a blocked writer only once a third of the socket's send buffer
//! is free, and it grows that buffer to MiBs while the client reads fast at first: a client
//! that then read 300 KB/s saw no write make progress for longer than a 2 s send timeout and
//! was cut while reading. The balancer now caps what a client socket holds unsent
//! (`TCP_NOTSENT_LOWAT`), so writes make progress as the client reads.
//!
//! Over TLS the same holds, judged by what the socket under rustls sent; and a client over
//! TLS that reads nothing is closed at the send timeout for not reading. It used to be seen
//! only through rustls's buffer: an HTTP/2 client with a large window held its connection
//! for three send timeouts and was then closed for its window instead.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "h2/raw.rs"]
mod raw;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

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

/// A balancer in front of [`big_member`] with `send_timeout` (and a `[manager]` for its
/// metrics), over TLS when `tls` gives the certificate's files.
async fn balancer(send_timeout: &str, tls: Option<&Certificate>) -> harness::Lb {
    let mut server = format!("send_timeout = \"{send_timeout}\"\n");
    if let Some(cert) = tls {
        server.push_str(&format!(
            "certificate = \"{}\"\nkey = \"{}\"\n",
            cert.chain.display(),
            cert.key.display()
        ));
    }
    harness::lb(
        &[big_member().await],
        &server,
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await
}

/// A certificate for `lb.test` in PEM files, and a client configuration that trusts it.
struct Certificate {
    chain: PathBuf,
    key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

impl Certificate {
    fn new(what: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["lb.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "slow-readers-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (chain, key_file) = (dir.join("lb.pem"), dir.join("lb.key"));
        std::fs::write(&chain, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Self {
            chain,
            key: key_file,
            client: harness::trusting(cert.der()),
        }
    }

    /// A TLS connection to `lb` for `lb.test`, offering `alpn` only.
    async fn connect(&self, lb: SocketAddr, alpn: &[u8]) -> TlsStream<TcpStream> {
        let mut config = (*self.client).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(lb).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("lb.test").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = tls.connect(name, tcp).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
        stream
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        if let Some(dir) = self.chain.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn in_flight(lb: &harness::Lb) -> u64 {
    lb.registry.load().get("node1").unwrap().stats().in_flight()
}

/// Asks `client` for the big answer and reads 300 KB/s of it, for 7 s (three and a half
/// send timeouts of 2 s): it is not cut, and the member's exchange is still open.
async fn read_steadily(mut client: impl AsyncRead + AsyncWrite + Unpin, lb: &harness::Lb) {
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await
        .unwrap();
    // 15 KB every 50 ms
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
    assert_eq!(in_flight(lb), 1, "the exchange was cut ({got} bytes read)");
    let metrics = harness::metrics(lb).await;
    let line = "lb_client_connections_closed_total{reason=\"send_timeout\"} 0";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
}

#[tokio::test]
async fn a_client_reading_a_big_answer_slowly_but_steadily_is_not_cut() {
    let lb = balancer("2s", None).await;
    read_steadily(TcpStream::connect(lb.addr).await.unwrap(), &lb).await;
}

#[tokio::test]
async fn a_client_reading_slowly_but_steadily_over_tls_is_not_cut() {
    let cert = Certificate::new("steady");
    let lb = balancer("2s", Some(&cert)).await;
    read_steadily(cert.connect(lb.addr, b"http/1.1").await, &lb).await;
}

/// Asks for the big answer over TLS with `alpn` and never reads: the connection is closed
/// between one and two send timeouts after the request, for not reading.
async fn never_read_over_tls(alpn: &[u8]) {
    let cert = Certificate::new("never");
    let send = Duration::from_secs(1);
    let lb = balancer("1s", Some(&cert)).await;
    let mut client = cert.connect(lb.addr, alpn).await;
    let request = if alpn == b"h2" {
        // every window as large as HTTP/2 allows: nothing but the socket holds the answer
        // back
        let mut start = raw::preface(0x7fff_ffff);
        start.extend(raw::get(1, "/big"));
        start
    } else {
        b"GET /big HTTP/1.1\r\nHost: lb.test\r\n\r\n".to_vec()
    };
    client.write_all(&request).await.unwrap();
    let asked = Instant::now();
    // and never read: the member's exchange ends when the connection is closed
    while in_flight(&lb) == 0 && asked.elapsed() < send {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while in_flight(&lb) > 0 {
        assert!(
            asked.elapsed() < send * 2,
            "{alpn:?}: still open {:?} after the request",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = asked.elapsed();
    assert!(took >= send, "{alpn:?}: closed after {took:?}");
    // closed for not reading (over HTTP/2, not for its window)
    let metrics = harness::metrics(&lb).await;
    harness::assert_closed(&metrics, &[("send_timeout", 1), ("window", 0)]);
    drop(client);
}

#[tokio::test]
async fn an_http2_client_over_tls_that_reads_nothing_is_closed_at_the_send_timeout() {
    never_read_over_tls(b"h2").await;
}

#[tokio::test]
async fn an_http1_client_over_tls_that_reads_nothing_is_closed_at_the_send_timeout() {
    never_read_over_tls(b"http/1.1").await;
}

#[tokio::test]
async fn an_http2_client_over_tls_that_read_late_and_then_starves_a_stream_is_closed_for_its_window(
) {
    let cert = Certificate::new("late");
    let lb = balancer("1s", Some(&cert)).await;
    let (mut read, mut write) = tokio::io::split(cert.connect(lb.addr, b"h2").await);
    let mut start = raw::preface(0x7fff_ffff);
    start.extend(raw::get(1, "/big"));
    write.write_all(&start).await.unwrap();
    // read nothing for a while: the socket fills and the server's writes wait on it
    tokio::time::sleep(Duration::from_millis(300)).await;
    // then read on, well within the send timeout, and cancel the big answer
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while got < 4 << 20 {
        let n = read.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
    write
        .write_all(&raw::cancel(std::iter::once(1)))
        .await
        .unwrap();
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), read.read(&mut buf)).await
    {
        assert!(n > 0, "closed while draining");
    }
    // a stream that gets no window (every new stream's window 0) while all else is read
    let mut starve = raw::frame_head(6, 0x4, 0, 0);
    starve.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
    starve.extend(raw::get(3, "/big"));
    write.write_all(&starve).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let asked = Instant::now();
    while in_flight(&lb) == 0 && asked.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while in_flight(&lb) > 0 {
        assert!(asked.elapsed() < Duration::from_secs(4), "still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // closed for the window it withheld: the wait on the socket at the start was over
    let metrics = harness::metrics(&lb).await;
    harness::assert_closed(&metrics, &[("window", 1), ("send_timeout", 0)]);
    reader.abort();
}
