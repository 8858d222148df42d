//! Failover against real hyper members on 127.0.0.1: a refused connection, and a member that
//! dies after reading a POST. Every test is bounded by a timeout.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn as hyper_service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, Picked, RequestBody};
use tower_balancer::error::error_status;
use tower_balancer::failover::{FailoverConfig, FailoverLayer, ReplayBody};
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};

type Ledger = Arc<Mutex<Vec<Bytes>>>;
type Outbound = RequestBody<ReplayBody<Full<Bytes>>>;

/// An HTTP/1.1 member that records and echoes every request body.
async fn echo_member() -> (SocketAddr, Ledger) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ledger: Ledger = Arc::default();
    let l = ledger.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let l = l.clone();
            tokio::spawn(async move {
                let svc = hyper_service_fn(move |req: Request<Incoming>| {
                    let l = l.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        l.lock().unwrap().push(body.clone());
                        Ok::<_, Infallible>(Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (addr, ledger)
}

/// A member that reads a whole request, records its body, then closes the connection without
/// answering: the request reached it, and it died.
async fn dying_member() -> (SocketAddr, Ledger) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ledger: Ledger = Arc::default();
    let l = ledger.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        l.lock()
                            .unwrap()
                            .push(Bytes::copy_from_slice(&buf[end + 4..end + 4 + len]));
                        break;
                    }
                }
            }
            let _ = sock.shutdown().await;
        }
    });
    (addr, ledger)
}

/// A loopback port with nothing listening.
async fn refused_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Sends each attempt to the picked member's endpoint over a pooled hyper client, reporting
/// failures as `UpstreamError` the way a transport must.
fn forward() -> impl tower::Service<
    Request<Outbound>,
    Response = Response<Incoming>,
    Error = UpstreamError,
    Future = impl Send,
> + Clone {
    let client: Client<HttpConnector, Outbound> =
        Client::builder(TokioExecutor::new()).build_http();
    service_fn(move |mut req: Request<Outbound>| {
        let client = client.clone();
        async move {
            let member = req.extensions().get::<Picked>().unwrap().0.clone();
            let endpoint = member.endpoint();
            let uri = Uri::builder()
                .scheme(endpoint.scheme().unwrap().clone())
                .authority(endpoint.authority().unwrap().clone())
                .path_and_query(req.uri().path_and_query().map_or("/", |p| p.as_str()))
                .build()
                .unwrap();
            *req.uri_mut() = uri;
            client.request(req).await.map_err(|e| {
                let kind = if e.is_connect() {
                    UpstreamErrorKind::Connect
                } else {
                    UpstreamErrorKind::Reset
                };
                UpstreamError::new(kind, e)
            })
        }
    })
}

fn member(id: &str, addr: SocketAddr, priority: u16) -> MemberSpec {
    MemberSpec::new(
        MemberId::new(id).unwrap(),
        format!("http://{addr}").parse().unwrap(),
    )
    .priority(priority)
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_the_other_member_for_a_post_with_its_body() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (good, ledger) = echo_member().await;
        let r = Registry::new();
        // the dead member is preferred, so every request tries it first
        r.insert(member("dead", refused_port().await, 0)).unwrap();
        r.insert(member("good", good, 1)).unwrap();
        let svc = ServiceBuilder::new()
            .layer(FailoverLayer::new(r.clone(), FailoverConfig::default()))
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward());
        for i in 0..5 {
            let body = format!("user=admin&attempt={i}");
            let req = Request::builder()
                .method(Method::POST)
                .uri("/carbon/admin/login_action.jsp")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), body);
        }
        assert_eq!(ledger.lock().unwrap().len(), 5);
        let dead = r.load().get("dead").unwrap().stats().view();
        assert_eq!(
            (dead.failures, dead.last_failure),
            (5, Some(tower_balancer::outcome::FailureKind::Connect))
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_member_that_dies_after_reading_a_post_is_not_retried_and_has_it_once() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (dying, dying_ledger) = dying_member().await;
        let (good, good_ledger) = echo_member().await;
        let r = Registry::new();
        r.insert(member("dying", dying, 0)).unwrap();
        r.insert(member("good", good, 1)).unwrap();
        let svc = ServiceBuilder::new()
            .layer(FailoverLayer::new(r.clone(), FailoverConfig::default()))
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward());
        let req = Request::builder()
            .method(Method::POST)
            .uri("/pay")
            .body(Full::new(Bytes::from_static(b"order=42")))
            .unwrap();
        let err = svc.clone().oneshot(req).await.unwrap_err();
        assert_eq!(error_status(&*err), StatusCode::BAD_GATEWAY);
        assert_eq!(
            dying_ledger.lock().unwrap().as_slice(),
            &[Bytes::from_static(b"order=42")]
        );
        assert!(
            good_ledger.lock().unwrap().is_empty(),
            "the POST was sent a second time"
        );
        // the same failure for a GET is retried on the good member
        let res = svc
            .oneshot(
                Request::get("/status")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    })
    .await
    .unwrap();
}
