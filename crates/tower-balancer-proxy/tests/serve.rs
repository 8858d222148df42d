//! Serving the whole stack on 127.0.0.1: TLS in front, limits against slow and oversize
//! clients, errors as statuses, graceful shutdown. Every test is bounded by a timeout.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;
use tower_balancer::balance::BalanceLayer;
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer_proxy::forward::ForwardConfig;
use tower_balancer_proxy::serve::{server_tls_from_pem, ServeConfig, Server};

/// A plain member that says who it is and what X-Forwarded-For it got, after `delay`.
async fn member(name: &'static str, delay: Duration) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    let xff = req
                        .headers()
                        .get("x-forwarded-for")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let xfp = req
                        .headers()
                        .get("x-forwarded-proto")
                        .map(|v| v.to_str().unwrap().to_owned());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "{name} {xff:?} {xfp:?}"
                    )))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    addr
}

fn registry(members: &[(&str, SocketAddr)]) -> Registry {
    let r = Registry::new();
    for (id, addr) in members {
        r.insert(MemberSpec::new(
            MemberId::new(*id).unwrap(),
            format!("http://{addr}").parse().unwrap(),
        ))
        .unwrap();
    }
    r
}

/// Starts the balancer (balance + forward) with `config`; returns its address and a trigger
/// that shuts it down, and the task.
async fn balancer(
    r: &Registry,
    config: ServeConfig,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (addr, stop, task, _) = counted_balancer(r, config).await;
    (addr, stop, task)
}

/// [`balancer`], with the server's counters.
async fn counted_balancer(
    r: &Registry,
    config: ServeConfig,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    tower_balancer_proxy::serve::ServerStats,
) {
    let forward = ForwardConfig::new().build(r.clone()).unwrap();
    let stack = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(forward);
    // a listener the caller bound (Server::bind is what the config path's tests use)
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::from_listener(listener, config);
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        server
            .serve(stack, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (addr, tx, task, stats)
}

/// Sends raw bytes and returns the response's status line (or "" if closed without one).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw_on(&mut s, bytes).await
}

/// Sends more bytes on `s` and returns the answer's status line ("" if closed without one).
async fn raw_on(s: &mut tokio::net::TcpStream, bytes: &[u8]) -> String {
    let _ = s.write_all(bytes).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Sends a GET on `s` and reads the start of its answer (the member's answers are small).
async fn get(s: &mut tokio::net::TcpStream) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits for the balancer to close an idle `s` without a word; how long it took.
async fn closed_silently(s: &mut tokio::net::TcpStream) -> Duration {
    let start = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was held open");
    assert!(rest.is_empty());
    start.elapsed()
}

/// A server certificate for wso2.com signed by a private CA: the server's TLS config and a
/// client config that trusts the CA.
fn tls_pair() -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["wso2.com".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let tls = server_tls_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (tls, tokio_rustls::TlsConnector::from(Arc::new(client_tls)))
}

/// GET /carbon/ for wso2.com over TLS: the status and the body.
async fn tls_get(addr: SocketAddr, connector: &tokio_rustls::TlsConnector) -> (StatusCode, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("wso2.com").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = send
        .send_request(
            Request::get("/carbon/")
                .header("host", "wso2.com")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn the_stack_is_served_over_tls_with_the_clients_address_forwarded() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (tls, connector) = tls_pair();
        let m = member("node1", Duration::ZERO).await;
        let r = registry(&[("node1", m)]);
        let (addr, stop, task) = balancer(&r, ServeConfig::new().tls(tls)).await;
        let (status, body) = tls_get(addr, &connector).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"node1 Some(\"127.0.0.1\") Some(\"https\")");
        let _ = stop.send(());
        task.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn plain_http_sent_to_the_tls_port_gets_a_400_that_says_so() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (tls, connector) = tls_pair();
        let m = member("node1", Duration::ZERO).await;
        let r = registry(&[("node1", m)]);
        let config = ServeConfig::new()
            .tls(tls)
            .header_read_timeout(Duration::from_millis(500));
        let (addr, _stop, _task, stats) = counted_balancer(&r, config).await;
        // the whole answer, then the close (not a reset that loses it)
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /carbon/ HTTP/1.1\r\nHost: wso2.com\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.contains("connection: close"), "{answer}");
        assert!(
            answer.ends_with("sent as plain HTTP. Use https.\n"),
            "{answer}"
        );
        // a request head sent in pieces is read to its end first
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            raw_on(&mut s, b"Host: wso2.com\r\nContent-Length: 3\r\n\r\nabc").await,
            "HTTP/1.1 400 Bad Request"
        );
        // typed by hand: bare LF lines, a lowercase method, an empty line first
        for typed in [
            &b"GET / HTTP/1.0\n\n"[..],
            b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            let line = raw(addr, typed).await;
            assert_eq!(line, "HTTP/1.1 400 Bad Request", "{typed:?}");
        }
        // a head that never ends is told too, once the header-read time is up
        let start = Instant::now();
        let line = raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\n").await;
        assert_eq!(line, "HTTP/1.1 400 Bad Request");
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
        // a socket that never starts TLS holds its slot no longer than a request head would
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let held = closed_silently(&mut silent).await;
        assert!(held < Duration::from_millis(1500), "{held:?}");
        // TLS clients are served as before
        let (status, _) = tls_get(addr, &connector).await;
        assert_eq!(status, StatusCode::OK);
        // counted apart from failed handshakes (the silent socket)
        assert_eq!(stats.plain_http_on_tls(), 6);
        assert_eq!(stats.tls_handshake_failures(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn slowloris_and_oversize_headers_are_cut_off_while_others_are_served() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let m = member("node1", Duration::ZERO).await;
        let r = registry(&[("node1", m)]);
        let config = ServeConfig::new().header_read_timeout(Duration::from_millis(500));
        let (addr, _stop, _task) = balancer(&r, config).await;
        // a client that never finishes its headers gets 408 and is dropped after the timeout
        let slow = tokio::spawn(async move {
            let start = Instant::now();
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
            let answer = String::from_utf8_lossy(&answer).to_string();
            assert!(
                answer.starts_with("HTTP/1.1 408 Request Timeout"),
                "{answer:?}"
            );
            start.elapsed()
        });
        // meanwhile others are served
        let ok = raw(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(ok, "HTTP/1.1 200 OK");
        let waited = slow.await.unwrap();
        // an idle keep-alive connection is closed without a word
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut answer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(3), idle.read_to_end(&mut answer)).await;
        assert!(closed.is_ok(), "an idle connection was held open");
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
        assert!(
            waited < Duration::from_secs(3),
            "slow client held the connection {waited:?}"
        );
        // 64 KiB of headers and 101 header fields: 431
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        assert!(raw(addr, big.as_bytes()).await.contains("431"));
        let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..101 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(raw(addr, many.as_bytes()).await.contains("431"));
        // and 90 fields are taken (the member, hyper with the same limit of 100, also gets
        // the forwarding headers the balancer adds)
        let mut hundred = String::from("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..88 {
            hundred.push_str(&format!("X-H{i}: v\r\n"));
        }
        hundred.push_str("\r\n");
        let answer = raw(addr, hundred.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // and still serving
        assert_eq!(
            raw(
                addr,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .await,
            "HTTP/1.1 200 OK"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stack_errors_become_statuses_without_upstream_text() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dead = {
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let r = registry(&[("node1", dead)]);
        let (addr, _stop, _task) = balancer(&r, ServeConfig::new()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 502"), "{text}");
        assert!(
            !text.contains("refused") && !text.contains("127.0.0.1"),
            "{text}"
        );
        // nothing eligible: 503
        r.remove("node1").unwrap();
        assert!(raw(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .await
        .contains("503"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let m = member("node1", Duration::from_millis(500)).await;
        let r = registry(&[("node1", m)]);
        let (addr, stop, task) = balancer(&r, ServeConfig::new()).await;
        let in_flight = tokio::spawn(async move {
            raw(
                addr,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        assert_eq!(in_flight.await.unwrap(), "HTTP/1.1 200 OK");
        task.await.unwrap();
        // no longer accepting
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_slow_answer_is_not() {
    tokio::time::timeout(Duration::from_secs(30), async {
        // the member takes 800 ms, longer than the keep-alive limit of 300 ms
        let m = member("node1", Duration::from_millis(800)).await;
        let r = registry(&[("node1", m)]);
        let config = ServeConfig::new().keep_alive_timeout(Duration::from_millis(300));
        let (addr, _stop, _task) = balancer(&r, config).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(
            get(&mut s).await.starts_with("HTTP/1.1 200"),
            "the slow answer arrived"
        );
        // then idle: closed after about 300 ms, without a word
        let took = closed_silently(&mut s).await;
        assert!(took >= Duration::from_millis(250), "{took:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_keep_alive_limit_counts_from_the_last_request_not_the_first() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let m = member("node1", Duration::ZERO).await;
        let r = registry(&[("node1", m)]);
        let config = ServeConfig::new().keep_alive_timeout(Duration::from_millis(400));
        let (addr, _stop, _task) = balancer(&r, config).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // three requests 250 ms apart: each within the limit of the one before, together
        // longer than it; the idle timer armed after the first must not close the connection
        for _ in 0..3 {
            assert!(
                get(&mut s).await.starts_with("HTTP/1.1 200"),
                "a request within the keep-alive limit was refused"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // 250 ms idle already; closed about 150 ms from now, counted from the last answer
        let took = closed_silently(&mut s).await;
        assert!(took >= Duration::from_millis(100), "closed early: {took:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stop_closes_an_idle_keep_alive_connection_at_once() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let m = member("node1", Duration::ZERO).await;
        let r = registry(&[("node1", m)]);
        // a keep-alive limit far longer than the test: only the stop can end the connection
        let config = ServeConfig::new().keep_alive_timeout(Duration::from_secs(60));
        let (addr, stop, task) = balancer(&r, config).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut s).await.starts_with("HTTP/1.1 200"));
        let _ = stop.send(());
        let took = closed_silently(&mut s).await;
        assert!(took < Duration::from_secs(2), "{took:?}");
        // and the server did not wait out its graceful timeout for it
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the server waited for an idle connection")
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stop_closes_a_connection_with_a_later_head_half_sent_at_once() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let m = member("node1", Duration::ZERO).await;
        let r = registry(&[("node1", m)]);
        // the header-read timeout far longer than the test: only the stop can end it
        let config = ServeConfig::new().header_read_timeout(Duration::from_secs(60));
        let (addr, stop, task) = balancer(&r, config).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut s).await.starts_with("HTTP/1.1 200"));
        s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        let start = Instant::now();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the server waited for the half-sent head")
            .unwrap();
    })
    .await
    .unwrap();
}

/// A stop ends TLS handshakes under way at once: nothing was asked on them yet. A port
/// probe, or a client that connected and never sent its ClientHello, held the stop to the
/// handshake timeout.
#[tokio::test]
async fn a_stop_does_not_wait_for_a_tls_handshake_that_never_started() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (tls, _) = tls_pair();
        let m = member("node1", Duration::ZERO).await;
        let r = registry(&[("node1", m)]);
        let config = ServeConfig::new()
            .tls(tls)
            .handshake_timeout(Duration::from_secs(20))
            .header_read_timeout(Duration::from_secs(20));
        let (addr, stop, task) = balancer(&r, config).await;
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        let took = closed_silently(&mut silent).await;
        assert!(took < Duration::from_secs(2), "{took:?}");
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the server waited for a handshake that never started")
            .unwrap();
    })
    .await
    .unwrap();
}
