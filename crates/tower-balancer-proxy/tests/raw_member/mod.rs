//! A member speaking just enough HTTP/1.1 to count its connections, misbehaving as a test
//! asks, and the balancer in front of it, for the member-pool tests.
// each test file that includes this uses part of it
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, RequestBody};
use tower_balancer::client::ClientAddr;
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer_proxy::forward::ForwardConfig;

#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) accepted: AtomicUsize,
    pub(crate) closed_by_peer: AtomicUsize,
}

/// How the test member behaves on each connection.
#[derive(Clone, Copy)]
pub(crate) enum Behaviour {
    /// A `200 ok` with a length to each request, keeping the connection; or, after this many
    /// answers, a close without a word (what a member's keep-alive timeout does).
    Answer(Option<usize>),
    /// A bug: the first answer is followed, this long after, by a second nobody asked for.
    Stray(Duration),
    /// A keep-alive timeout racing requests: a request arriving on a connection idle this
    /// long is met with a close and no answer.
    Lazy(Duration),
    /// A member failing requests on reused connections: the first request on a connection
    /// is answered, a later one read, held this long and met with a close and no answer.
    Hold(Duration),
    /// As `Hold`, with a `408` and a close after the pause (what some servers send as their
    /// keep-alive timeout closes a connection).
    TimedOut(Duration),
}

/// A member speaking just enough HTTP/1.1 to count its connections.
pub(crate) async fn raw_member(behaviour: Behaviour) -> (SocketAddr, Arc<Counts>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            c.accepted.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut served = 0;
                let mut last = None::<tokio::time::Instant>;
                let mut buf = [0u8; 1024];
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        c.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if let (Behaviour::Lazy(idle), Some(t)) = (behaviour, last) {
                        if t.elapsed() >= idle {
                            return;
                        }
                    }
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head.drain(..end + 4);
                        if let (Behaviour::Hold(hold), 1..) = (behaviour, served) {
                            tokio::time::sleep(hold).await;
                            return;
                        }
                        if let (Behaviour::TimedOut(hold), 1..) = (behaviour, served) {
                            tokio::time::sleep(hold).await;
                            let _ = sock
                                .write_all(
                                    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\
                                      content-length: 0\r\n\r\n",
                                )
                                .await;
                            return;
                        }
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        served += 1;
                        last = Some(tokio::time::Instant::now());
                        if let (Behaviour::Stray(delay), 1) = (behaviour, served) {
                            tokio::time::sleep(delay).await;
                            let stray = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nSMUGGLED";
                            let _ = sock.write_all(stray).await;
                        }
                    }
                    if let Behaviour::Answer(Some(a)) = behaviour {
                        if served >= a {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, counts)
}

pub(crate) type Svc = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    http::Response<
        tower_balancer::balance::ResponseBody<tower_balancer_proxy::forward::MemberBody>,
    >,
    tower_balancer::BoxError,
>;

pub(crate) fn balancer(addr: SocketAddr, config: ForwardConfig) -> Svc {
    balancer_and_registry(addr, config).0
}

/// [`balancer`], and its registry, whose one member is `node1`.
pub(crate) fn balancer_and_registry(addr: SocketAddr, config: ForwardConfig) -> (Svc, Registry) {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        format!("http://{addr}").parse().unwrap(),
    ))
    .unwrap();
    let forward = config.build::<RequestBody<Full<Bytes>>>(r.clone()).unwrap();
    let svc = tower::util::BoxCloneService::new(
        ServiceBuilder::new()
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward),
    );
    (svc, r)
}

/// How many requests `node1` of `r` was sent again after a keep-alive race.
pub(crate) fn resends(r: &Registry) -> u64 {
    r.snapshot()
        .get("node1")
        .unwrap()
        .stats()
        .metrics()
        .resends()
}

pub(crate) async fn get(svc: Svc) -> String {
    let res = svc.oneshot(get_request()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// A `GET /` from a client at 127.0.0.1:1.
pub(crate) fn get_request() -> Request<Full<Bytes>> {
    let mut req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut()
        .insert(ClientAddr("127.0.0.1:1".parse().unwrap()));
    req
}
