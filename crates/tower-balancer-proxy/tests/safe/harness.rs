//! A balancer built from a configuration file with defaults untouched, and members that are
//! real sockets on loopback: an echo of the request head, a raw recorder, a member that
//! accepts and never answers, one that answers HTTP/1.0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_balancer::registry::Registry;
use tower_balancer_proxy::config::ConfigFile;

/// A running balancer.
pub(crate) struct Lb {
    pub(crate) addr: SocketAddr,
    pub(crate) manager: Option<SocketAddr>,
    pub(crate) registry: Registry,
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for Lb {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// Starts a balancer from a file for the members at `urls` (routes node1, node2, …), with
/// `server` lines added to `[server]`, `balancer` lines to `[balancer]`, and `tail` after
/// everything (more tables).
pub(crate) async fn lb(urls: &[String], server: &str, balancer: &str, tail: &str) -> Lb {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n{server}\n\
         [balancer]\nname = \"b\"\n"
    );
    text.push_str(balancer);
    text.push('\n');
    for (i, u) in urls.iter().enumerate() {
        text.push_str(&format!(
            "[[balancer.member]]\nurl = \"{u}\"\nroute = \"node{}\"\n",
            i + 1
        ));
    }
    text.push_str(tail);
    let config = ConfigFile::from_toml(&text, Path::new("lb.toml")).unwrap();
    let bound = config.build().unwrap().bind().await.unwrap();
    let addr = bound.local_addr().unwrap();
    let manager = bound.manager_addr();
    let registry = bound.registry().clone();
    let task = tokio::spawn(async move {
        let _ = bound.serve(std::future::pending()).await;
    });
    Lb {
        addr,
        manager,
        registry,
        _task: task,
    }
}

/// The balancer's `/metrics` (it must have a `[manager]`), as text.
// safe_defaults.rs includes the harness and reads no metrics
#[allow(dead_code)]
pub(crate) async fn metrics(lb: &Lb) -> String {
    let m = lb.manager.expect("a balancer with a [manager] table");
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {m}\r\nConnection: close\r\n\r\n");
    raw(m, req.as_bytes(), Duration::from_secs(5)).await
}

/// Asserts that `metrics` counts `n` client connections closed for each `(reason, n)`.
// not every test file that includes the harness reads these
#[allow(dead_code)]
pub(crate) fn assert_closed(metrics: &str, counts: &[(&str, u64)]) {
    for (reason, n) in counts {
        let line = format!("lb_client_connections_closed_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

/// Listens on a loopback port and runs `each` on every accepted connection, in its own
/// task; returns the member's URL.
pub(crate) async fn member<F, Fut>(each: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((sock, _)) => drop(tokio::spawn(each(sock))),
                // out of descriptors (tests that lower the limit): wait, as servers do
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    format!("http://{addr}")
}

/// A member answering `/slow` after 600 ms and `/slower` after 1.5 s (anything else at once)
/// with `ok`; returns its URL and the most `/slow` requests it had under way at once.
#[allow(dead_code)]
pub(crate) async fn slow_member() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = most.clone();
    let url = member(move |sock| {
        let (n, m) = (now.clone(), seen.clone());
        async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (n, m) = (n.clone(), m.clone());
                async move {
                    if req.uri().path() == "/slow" {
                        m.fetch_max(n.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        // long enough that a burst's streams are all under way at once on
                        // a loaded machine (at 300 ms a burst of ten was not, once)
                        tokio::time::sleep(Duration::from_millis(600)).await;
                        n.fetch_sub(1, Ordering::SeqCst);
                    } else if req.uri().path() == "/slower" {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok",
                    ))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        }
    })
    .await;
    (url, most)
}

/// Sends `n` requests for `/slow` at once on `send`'s HTTP/2 connection; their statuses,
/// sorted.
#[allow(dead_code)]
pub(crate) async fn h2_slow_burst(
    send: &hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
    n: usize,
) -> Vec<u16> {
    let asks: Vec<_> = (0..n).map(|_| h2_get(send, "/slow")).collect();
    let mut statuses = Vec::new();
    for ask in asks {
        statuses.push(ask.await.unwrap());
    }
    statuses.sort_unstable();
    statuses
}

/// A balancer with `server` lines (and a manager) in front of [`slow_member`], and an
/// HTTP/2 client: two rounds of ten `/slow` streams at once each get `served` 200s and
/// `refused` for the rest, the second as the first (the places came back), and the member
/// saw `served` at once at most.
#[allow(dead_code)]
pub(crate) async fn h2_bursts_at_a_cap(
    server: &str,
    served: usize,
    refused: u16,
) -> (
    Lb,
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
) {
    let (url, most) = slow_member().await;
    let lb = lb(&[url], server, "", "[manager]\nlisten = \"127.0.0.1:0\"\n").await;
    let send = h2_client(lb.addr).await;
    let mut expected = vec![200; served];
    expected.resize(10, refused);
    expected.sort_unstable();
    for round in 0..2 {
        assert_eq!(h2_slow_burst(&send, 10).await, expected, "round {round}");
    }
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), served);
    (lb, send)
}

/// Asks for `path` on `send`'s HTTP/2 connection, in a task: its status.
#[allow(dead_code)]
pub(crate) fn h2_get(
    send: &hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
    path: &str,
) -> tokio::task::JoinHandle<u16> {
    let mut send = send.clone();
    let req = Request::get(format!("http://lb.test{path}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    tokio::spawn(async move { send.send_request(req).await.unwrap().status().as_u16() })
}

/// A member answering every request with its request line and headers, one per line; the
/// request lines it saw are kept.
pub(crate) async fn echo_member() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let url = member(move |sock| {
        let log = log.clone();
        async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                log.lock()
                    .unwrap()
                    .push(format!("{} {}", req.method(), req.uri()));
                echo(req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), svc)
                .with_upgrades()
                .await;
        }
    })
    .await;
    (url, seen)
}

/// The request head and the body's length, as text.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes);
    text.push_str(&format!("body: {}\n", body.map_or(0, |b| b.len())));
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// What a recording member appends to a connection's bytes when the balancer closes it.
pub(crate) const CLOSED: &str = "<closed>";

/// A member that records every byte it receives, per connection, and answers nothing.
pub(crate) async fn recording_member() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let url = member(move |mut sock| {
        let log = log.clone();
        let i = {
            let mut l = log.lock().unwrap();
            l.push(Vec::new());
            l.len() - 1
        };
        async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 {
                    log.lock().unwrap()[i].extend_from_slice(CLOSED.as_bytes());
                    break;
                }
                log.lock().unwrap()[i].extend_from_slice(&buf[..n]);
            }
        }
    })
    .await;
    (url, seen)
}

/// A member that reads a request head, writes `answer` as it is and closes.
pub(crate) async fn raw_member(answer: &'static [u8]) -> String {
    member(move |mut sock| async move {
        if read_request_head(&mut sock).await.is_none() {
            return;
        }
        let _ = sock.write_all(answer).await;
    })
    .await
}

/// Reads a request's head from `sock` and returns it (with whatever came with it); `None`
/// when the peer closed or failed first.
pub(crate) async fn read_request_head(sock: &mut TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// A member that answers every request in HTTP/1.0 and closes.
pub(crate) async fn http10_member() -> String {
    raw_member(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold").await
}

/// A TCP port with nothing listening.
pub(crate) fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Sends `raw` on a new connection and reads until the peer closes or `limit` passes.
pub(crate) async fn raw(addr: SocketAddr, raw: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 response with a Content-Length or chunked body from `s`, returning its
/// head and body; `buf` keeps bytes already read past it.
pub(crate) async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let lower = head.to_ascii_lowercase();
    let body = if let Some(cl) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        let n: usize = cl.trim().parse().unwrap();
        while buf.len() < n {
            let k = s.read(&mut chunk).await.unwrap();
            assert!(k > 0);
            buf.extend_from_slice(&chunk[..k]);
        }
        buf.drain(..n).collect()
    } else if lower.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let k = s.read(&mut chunk).await.unwrap();
                assert!(k > 0);
                buf.extend_from_slice(&chunk[..k]);
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                let k = s.read(&mut chunk).await.unwrap();
                assert!(k > 0);
                buf.extend_from_slice(&chunk[..k]);
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
            if size == 0 {
                break body;
            }
        }
    } else {
        Vec::new()
    };
    (head, body)
}

/// A TLS client configuration (ring) that trusts the certificate `ca` (DER) and no other.
// not every test file that includes the harness speaks TLS
#[allow(dead_code)]
pub(crate) fn trusting(ca: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.to_vec().into()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(client)
}

/// An HTTP/2 client connection (prior knowledge, no TLS) to `addr`, driven in a task.
// not every test file that includes the harness speaks HTTP/2
#[allow(dead_code)]
pub(crate) async fn h2_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let sock = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(TokioIo::new(sock))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}
