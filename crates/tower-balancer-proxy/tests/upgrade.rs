//! Upgrades (WebSocket handshake and a raw echo over the tunnel) through the served
//! balancer on 127.0.0.1, and the tunnels as the server's connections: counted against its
//! connection cap, waited for by a stop and closed at its graceful timeout. Bounded by a
//! timeout.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;
use tower_balancer::balance::BalanceLayer;
use tower_balancer::failover::{FailoverConfig, FailoverLayer};
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::sticky::{StickyConfig, StickyLayer};
use tower_balancer::strategy::RoundRobin;
use tower_balancer_proxy::forward::ForwardConfig;
use tower_balancer_proxy::serve::{ServeConfig, Server};

/// A member that switches protocols, echoes the first message it gets, then goes away.
async fn echo_once_member() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|mut req: Request<Incoming>| async move {
                    let h = req.headers();
                    let handshake = req.method() == http::Method::GET
                        && req.version() == http::Version::HTTP_11
                        && h.get("upgrade").is_some_and(|v| v == "websocket")
                        && h.contains_key("sec-websocket-key")
                        && h.get("sec-websocket-version").is_some_and(|v| v == "13");
                    if !handshake {
                        let mut res = Response::new(Full::new(Bytes::new()));
                        *res.status_mut() = StatusCode::BAD_REQUEST;
                        return Ok::<_, Infallible>(res);
                    }
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let mut io = TokioIo::new(on.await.unwrap());
                        let mut buf = [0u8; 64];
                        let n = io.read(&mut buf).await.unwrap();
                        io.write_all(&buf[..n]).await.unwrap();
                        // and the member goes away
                    });
                    let mut res = Response::new(Full::new(Bytes::new()));
                    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    res.headers_mut()
                        .insert("upgrade", "websocket".parse().unwrap());
                    res.headers_mut()
                        .insert("connection", "upgrade".parse().unwrap());
                    res.headers_mut().insert(
                        "sec-websocket-accept",
                        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().unwrap(),
                    );
                    Ok::<_, Infallible>(res)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_websocket_handshake_and_its_bytes_pass_through_and_the_tunnel_closes_with_the_member() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let member = echo_once_member().await;
        let r = Registry::new();
        r.insert(MemberSpec::new(MemberId::new("node1").unwrap(), format!("http://{member}").parse().unwrap()))
            .unwrap();
        // the whole stack: sticky outside failover outside balance
        let sticky = StickyConfig::builder().build().unwrap();
        let stack = ServiceBuilder::new()
            .layer(StickyLayer::new(r.clone(), sticky))
            .layer(FailoverLayer::new(r.clone(), FailoverConfig::default()))
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(ForwardConfig::new().build(r.clone()).unwrap());
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServeConfig::new()).await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.serve(stack, std::future::pending()));

        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /carbon/ws HTTP/1.1\r\nHost: wso2.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("upgrade: websocket"), "{head}");
        assert!(head.contains("sec-websocket-accept"), "{head}");
        s.write_all(b"hello through the tunnel").await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello through the tunnel");
        // the member went away: the tunnel closes
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 0);
    })
    .await
    .unwrap();
}

/// The balancer's stack in front of `member`, served on plain HTTP (HTTP/1.1 or HTTP/2 by
/// preface).
async fn serve_in_front_of(member: SocketAddr) -> SocketAddr {
    serve_with_registry(member).await.0
}

/// [`serve_in_front_of`], with the registry it balances over.
async fn serve_with_registry(member: SocketAddr) -> (SocketAddr, Registry) {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        format!("http://{member}").parse().unwrap(),
    ))
    .unwrap();
    let stack = ServiceBuilder::new()
        .layer(StickyLayer::new(
            r.clone(),
            StickyConfig::builder().build().unwrap(),
        ))
        .layer(FailoverLayer::new(r.clone(), FailoverConfig::default()))
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(ForwardConfig::new().build(r.clone()).unwrap());
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), ServeConfig::new())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(stack, std::future::pending()));
    (addr, r)
}

/// Asks the balancer at `addr` for WebSocket over HTTP/2 (RFC 8441's extended CONNECT, after
/// a first request so the server's SETTINGS have arrived): its answer.
async fn h2_websocket(addr: SocketAddr) -> Response<Incoming> {
    let mut send = h2_client(addr).await;
    send.ready().await.unwrap();
    send.send_request(extended_connect(addr)).await.unwrap()
}

/// An HTTP/2 connection to the balancer at `addr`, after a first request, so the server's
/// SETTINGS (with ENABLE_CONNECT_PROTOCOL) have arrived.
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send.ready().await.unwrap();
    let mut first = Request::get(format!("http://{addr}/ping"))
        .body(Empty::new())
        .unwrap();
    *first.version_mut() = http::Version::HTTP_2;
    let _ = send.send_request(first).await.unwrap();
    send
}

/// RFC 8441's extended CONNECT for a WebSocket at `addr`.
fn extended_connect(addr: SocketAddr) -> Request<Empty<Bytes>> {
    let mut req = Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}/carbon/ws"))
        .version(http::Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    req
}

/// A member that answers every request with `answer`, whatever it asked.
async fn raw_member(answer: &'static [u8]) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock.write_all(answer).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_member_that_answers_websocket_over_http2_without_switching_is_a_502_or_its_refusal() {
    tokio::time::timeout(Duration::from_secs(20), async {
        // a 200 with a body, not 101: the stream cannot be a tunnel, and a 2xx to CONNECT
        // must not carry a body (hyper's HTTP/2 server reset the stream, no answer, no log)
        let ok = raw_member(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let (addr, registry) = serve_with_registry(ok).await;
        for _ in 0..3 {
            let res = h2_websocket(addr).await;
            assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "{res:?}");
        }
        // a valid answer to a request it need not grant: not held against the member
        let member = registry.load().get("node1").unwrap().stats().view();
        assert_eq!(member.failures, 0, "{member:?}");
        // a switch to a protocol it was not asked for is no tunnel (hostile round 5)
        let foo = raw_member(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
        )
        .await;
        let res = h2_websocket(serve_in_front_of(foo).await).await;
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "{res:?}");
        // a refusal passes as it is
        let no = raw_member(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno").await;
        let res = h2_websocket(serve_in_front_of(no).await).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{res:?}");
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"no");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn websocket_over_http2_extended_connect_is_bridged_to_an_http11_upgrade() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let addr = serve_in_front_of(echo_once_member().await).await;
        let mut res = h2_websocket(addr).await;
        assert_eq!(res.status(), StatusCode::OK, "{res:?}");
        assert!(!res.headers().contains_key("sec-websocket-accept"));
        let mut io = TokioIo::new(hyper::upgrade::on(&mut res).await.unwrap());
        io.write_all(b"hello over h2").await.unwrap();
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello over h2");
        // the member went away: the stream ends
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn plain_connect_is_refused() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let addr = serve_in_front_of(echo_once_member().await).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    })
    .await
    .unwrap();
}

/// A member that switches protocols and echoes what it gets until the client closes.
async fn echo_member() -> SocketAddr {
    switching_member(true).await
}

/// A member that switches protocols, then echoes what it gets (`echo`) or reads it and
/// never answers, until the client closes.
async fn switching_member(echo: bool) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if sock.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                if !String::from_utf8_lossy(&head)
                    .to_ascii_lowercase()
                    .contains("upgrade: websocket")
                {
                    let _ = sock
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let switched = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
                if sock.write_all(switched).await.is_err() {
                    return;
                }
                let (mut r, mut w) = sock.split();
                if echo {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                } else if head.starts_with(b"GET /sink ") {
                    // counts what comes to the client's end, then says how much
                    let n = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
                    let _ = w
                        .write_all(format!("GOT {}", n.unwrap_or(0)).as_bytes())
                        .await;
                } else {
                    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
                    // the client's end seen, the member still keeps its own half open
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    addr
}

/// The balancer's stack in front of `member`, served with `config` until `stop` completes;
/// its address and the task serving it.
async fn serve_until(
    member: SocketAddr,
    config: ServeConfig,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    serve_with(member, config, ForwardConfig::new(), stop).await
}

/// [`serve_until`], forwarding with `forward`.
async fn serve_with(
    member: SocketAddr,
    config: ServeConfig,
    forward: ForwardConfig,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let (addr, task, _) = serve_counted(member, config, forward, stop).await;
    (addr, task)
}

/// [`serve_with`], with the server's counters.
async fn serve_counted(
    member: SocketAddr,
    config: ServeConfig,
    forward: ForwardConfig,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<()>,
    tower_balancer_proxy::serve::ServerStats,
) {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        format!("http://{member}").parse().unwrap(),
    ))
    .unwrap();
    let stack = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(forward.build(r.clone()).unwrap());
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let task = tokio::spawn(async move {
        server
            .serve(stack, async move {
                let _ = stop.await;
            })
            .await
            .unwrap();
    });
    (addr, task, stats)
}

/// A WebSocket tunnel through the balancer at `addr`, checked to echo.
async fn open_tunnel(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut s = switch(addr).await;
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    s
}

/// A WebSocket tunnel through the balancer at `addr`, once switched.
async fn switch(addr: SocketAddr) -> tokio::net::TcpStream {
    switch_to(addr, "/ws").await
}

/// [`switch`], asking for `path`.
async fn switch_to(addr: SocketAddr, path: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: wso2.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test]
async fn open_tunnels_count_against_the_connection_cap() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (_stop, stop) = tokio::sync::oneshot::channel();
        let config = ServeConfig::new().max_connections(2);
        let (addr, _task) = serve_until(echo_member().await, config, stop).await;
        let first = open_tunnel(addr).await;
        let _second = open_tunnel(addr).await;
        // both tunnels hold their descriptors: a third client waits in the backlog
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET / HTTP/1.1\r\nHost: wso2.com\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
        assert!(early.is_err(), "served past the cap: {early:?}");
        // a tunnel closes: its slot goes to the third
        drop(first);
        let n = third.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 400"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stop_waits_for_open_tunnels_then_closes_them_at_the_graceful_timeout() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (stop_tx, stop) = tokio::sync::oneshot::channel();
        let grace = Duration::from_millis(400);
        let config = ServeConfig::new().graceful_timeout(grace);
        let (addr, task) = serve_until(echo_member().await, config, stop).await;
        let mut tunnel = open_tunnel(addr).await;
        let asked = std::time::Instant::now();
        stop_tx.send(()).unwrap();
        // the tunnel works while the stop waits for it
        tokio::time::sleep(Duration::from_millis(100)).await;
        tunnel.write_all(b"late").await.unwrap();
        let mut buf = [0u8; 4];
        tunnel.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
        task.await.unwrap();
        assert!(
            asked.elapsed() >= grace,
            "the stop did not wait: {:?}",
            asked.elapsed()
        );
        // and closed it when the graceful timeout ran out
        let closed = tokio::time::timeout(Duration::from_secs(2), tunnel.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "still open: {closed:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_tunnel_whose_client_left_is_closed_though_its_member_stays_silent() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (_stop, stop) = tokio::sync::oneshot::channel();
        let config = ServeConfig::new().max_connections(1);
        // after one side's end, a tunnel lives on while bytes pass, at most its idle timeout
        // (and 10 s) of silence
        let forward = ForwardConfig::new().tunnel_idle_timeout(Duration::from_secs(1));
        let member = switching_member(false).await;
        let (addr, _task) = serve_with(member, config, forward, stop).await;
        let mut first = switch(addr).await;
        first.write_all(b"bye").await.unwrap();
        drop(first);
        // the one place under the cap came back: a second tunnel switches
        let second = tokio::time::timeout(Duration::from_secs(3), switch(addr)).await;
        assert!(
            second.is_ok(),
            "the first tunnel still holds the only place"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_tunnel_is_closed_once_idle_for_its_timeout_and_kept_while_bytes_pass() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (_stop, stop) = tokio::sync::oneshot::channel();
        let idle = Duration::from_millis(400);
        let forward = ForwardConfig::new().tunnel_idle_timeout(idle);
        let (addr, _task) =
            serve_with(echo_member().await, ServeConfig::new(), forward, stop).await;
        let mut tunnel = open_tunnel(addr).await;
        // a byte every 200 ms for 1.2 s: never idle for its timeout
        let mut buf = [0u8; 1];
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tunnel.write_all(b"x").await.unwrap();
            tunnel.read_exact(&mut buf).await.unwrap();
        }
        // then nothing: closed after the timeout
        let quiet = std::time::Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(3), tunnel.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "still open: {closed:?}"
        );
        assert!(
            quiet.elapsed() >= Duration::from_millis(300),
            "{:?}",
            quiet.elapsed()
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn each_http2_tunnel_takes_a_place_under_the_connection_cap() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (_stop, stop) = tokio::sync::oneshot::channel();
        // the cap of 3 connections is 6 descriptors: two for the connection, one for each of
        // four tunnels
        let config = ServeConfig::new().max_connections(3);
        let (addr, _task, stats) =
            serve_counted(echo_member().await, config, ForwardConfig::new(), stop).await;
        let mut send = h2_client(addr).await;
        let mut open = Vec::new();
        let mut statuses = Vec::new();
        for _ in 0..5 {
            send.ready().await.unwrap();
            let mut res = send.send_request(extended_connect(addr)).await.unwrap();
            statuses.push(res.status());
            if res.status() == StatusCode::OK {
                open.push(TokioIo::new(hyper::upgrade::on(&mut res).await.unwrap()));
            }
        }
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::SERVICE_UNAVAILABLE
            ]
        );
        // refused before the stack, as an HTTP/2 request past the cap is: counted
        assert!(stats.refused_requests().contains(&("capacity", 1)));
        // a tunnel closes: its place is free again
        drop(open.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        send.ready().await.unwrap();
        let again = send.send_request(extended_connect(addr)).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
    })
    .await
    .unwrap();
}

/// A WebSocket's traffic is no request's: the server counts its tunnels, those open, and
/// their bytes each way, over HTTP/1.1 and HTTP/2 alike.
#[tokio::test]
async fn tunnels_and_their_bytes_are_counted() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (_stop, stop) = tokio::sync::oneshot::channel();
        let member = echo_member().await;
        let (addr, _task, stats) =
            serve_counted(member, ServeConfig::new(), ForwardConfig::new(), stop).await;
        let h1 = open_tunnel(addr).await;
        let mut send = h2_client(addr).await;
        send.ready().await.unwrap();
        let mut res = send.send_request(extended_connect(addr)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let mut h2 = TokioIo::new(hyper::upgrade::on(&mut res).await.unwrap());
        h2.write_all(b"hello over h2").await.unwrap();
        let mut buf = [0u8; 13];
        h2.read_exact(&mut buf).await.unwrap();
        assert_eq!((stats.tunnels(), stats.tunnels_open()), (2, 2));
        // "ping" and "hello over h2", each way
        let bytes = stats.tunnel_bytes();
        assert_eq!((bytes.to_members(), bytes.to_clients()), (17, 17));
        drop((h1, h2, res));
        let mut open = stats.tunnels_open();
        for _ in 0..100 {
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            open = stats.tunnels_open();
        }
        assert_eq!((stats.tunnels(), open), (2, 0));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_client_ending_its_half_still_gets_the_members_reply() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (_stop, stop) = tokio::sync::oneshot::channel();
        let member = switching_member(false).await;
        let (addr, _task) = serve_until(member, ServeConfig::new(), stop).await;
        let mut tunnel = switch_to(addr, "/sink").await;
        // an upload, its end, then the member's answer to it
        tunnel.write_all(&vec![7u8; 65_536]).await.unwrap();
        tunnel.shutdown().await.unwrap();
        let mut reply = Vec::new();
        tunnel.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"GOT 65536");
    })
    .await
    .unwrap();
}
