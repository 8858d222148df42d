//! The request-smuggling list over raw sockets against the served stack on 127.0.0.1: each
//! case gets a 4xx or exactly one normalised request upstream, never a second request, and
//! the proxy keeps serving. The member counts and records what reaches it.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;
use tower_balancer::balance::BalanceLayer;
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer_proxy::forward::ForwardConfig;
use tower_balancer_proxy::serve::{ServeConfig, Server};

type Seen = Arc<Mutex<Vec<String>>>;

/// A member recording "METHOD URI framing-headers body" for every request it gets.
async fn recording_member() -> (SocketAddr, Seen) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move {
                        let framing: Vec<String> = ["content-length", "transfer-encoding", "host"]
                            .iter()
                            .flat_map(|h| {
                                req.headers()
                                    .get_all(*h)
                                    .iter()
                                    .map(move |v| format!("{h}={}", v.to_str().unwrap_or("?")))
                            })
                            .collect();
                        let head = format!("{} {} {}", req.method(), req.uri(), framing.join(","));
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(http_body_util::Collected::to_bytes)
                            .unwrap_or_default();
                        s.lock()
                            .unwrap()
                            .push(format!("{head} body={}", String::from_utf8_lossy(&body)));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn proxy(member: SocketAddr) -> SocketAddr {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        format!("http://{member}").parse().unwrap(),
    ))
    .unwrap();
    let stack = ServiceBuilder::new()
        .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
        .service(ForwardConfig::new().build(r.clone()).unwrap());
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServeConfig::new().header_read_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(stack, std::future::pending()));
    addr
}

/// Sends `bytes`, reads until the proxy closes or 2 s pass; returns every status line seen.
async fn send(addr: SocketAddr, bytes: &[u8]) -> Vec<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| l.starts_with("HTTP/1."))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_smuggling_list_never_reaches_the_member_as_two_requests() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let (member, seen) = recording_member().await;
        let addr = proxy(member).await;
        // each case ends with a would-be smuggled request; none may reach the member
        let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        let cases: Vec<(&str, String)> = vec![
            ("CL and TE", format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
            ("two different CLs", format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}")),
            ("CL +3", format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc{smuggled}")),
            ("TE chunked, chunked", format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n{smuggled}")),
            ("TE not ending in chunked", format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}")),
            ("HTTP/1.0 with TE", format!("POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
            ("obs-fold", format!("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n{smuggled}")),
            ("NUL in a header", format!("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n{smuggled}")),
            ("bare CR in a header", format!("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n{smuggled}")),
            ("invalid Host", format!("GET / HTTP/1.1\r\nHost: a b\r\n\r\n{smuggled}")),
            ("two Hosts", format!("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{smuggled}")),
            ("64 KiB header line", format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n{smuggled}", "a".repeat(64 * 1024))),
        ];
        for (name, bytes) in &cases {
            let before = seen.lock().unwrap().len();
            let statuses = send(addr, bytes.as_bytes()).await;
            let reached: Vec<String> = seen.lock().unwrap()[before..].to_vec();
            assert!(
                reached.iter().all(|r| !r.contains("/smuggled")),
                "{name}: a smuggled request reached the member: {reached:?} (statuses {statuses:?})"
            );
            assert!(reached.len() <= 1, "{name}: {} requests reached the member: {reached:?}", reached.len());
            for r in &reached {
                // one framing header at most, never both
                let framing = usize::from(r.contains("content-length=")) + usize::from(r.contains("transfer-encoding="));
                assert!(framing <= 1, "{name}: upstream request with two framing headers: {r}");
            }
            let first = statuses.first().cloned().unwrap_or_default();
            assert!(
                reached.len() == 1 || first.contains(" 400") || first.contains(" 431") || first.is_empty(),
                "{name}: neither rejected nor forwarded once: {statuses:?}"
            );
            println!("{name:28} -> {statuses:?}, upstream {reached:?}");
        }
        // still serving
        let ok = send(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(ok, ["HTTP/1.1 200 OK"]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_absolute_form_uri_naming_another_host_goes_only_to_the_member() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (member, seen) = recording_member().await;
        let addr = proxy(member).await;
        let statuses = send(addr, b"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n").await;
        assert_eq!(statuses, ["HTTP/1.1 200 OK"]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        // the path went to the registered member; no connection was made anywhere else
        assert!(seen[0].starts_with("GET /latest/meta-data"), "{}", seen[0]);
    })
    .await
    .unwrap();
}
