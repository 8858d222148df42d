//! The forwarder against real hyper members on 127.0.0.1, plain and TLS (certificates made
//! with rcgen). Every test is bounded by a timeout.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, RequestBody};
use tower_balancer::client::ClientAddr;
use tower_balancer::error::error_status;
use tower_balancer::health::{HttpProbe, ProbeResult};
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer::upstream::{find_upstream_error, UpstreamErrorKind};
use tower_balancer_proxy::forward::{ForwardConfig, UpstreamTls};
use tower_balancer_proxy::rewrite::ReverseRewrite;

#[path = "tls_pki/mod.rs"]
mod tls_pki;
use tls_pki::{pki, pki_speaking};

/// A member that answers with the request head it received, one header a line, and a
/// Location pointing at itself.
async fn serve_echo(tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let mut text = format!("{} {}\n", req.method(), req.uri());
                    for (k, v) in req.headers() {
                        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                    }
                    let mut res = Response::new(Full::new(Bytes::from(text)));
                    res.headers_mut().insert(
                        "location",
                        format!("http://{addr}/carbon/admin/").parse().unwrap(),
                    );
                    res.headers_mut()
                        .insert("keep-alive", "timeout=5".parse().unwrap());
                    Ok::<_, Infallible>(res)
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(sock).await {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(sock), svc).await;
                    }
                }
            });
        }
    });
    addr
}

fn registry_with(id: &str, uri: &str) -> Registry {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new(id).unwrap(),
        uri.parse().unwrap(),
    ))
    .unwrap();
    r
}

async fn body_text(res: Response<impl http_body::Body<Error = impl std::fmt::Debug>>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn requests_carry_forwarding_headers_and_no_hop_by_hop_headers() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let addr = serve_echo(None).await;
        let r = registry_with("node1", &format!("http://{addr}"));
        let forward = ForwardConfig::new()
            .reverse_rewrite(ReverseRewrite::new(&"https://wso2.com".parse().unwrap()))
            .build::<RequestBody<Full<Bytes>>>(r.clone())
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward);
        let mut req = Request::get("/carbon/?x=1")
            .header("host", "wso2.com")
            .header("connection", "close, X-Forwarded-For, Authorization")
            .header("x-forwarded-for", "6.6.6.6")
            .header("authorization", "Basic abc")
            .header("keep-alive", "timeout=9")
            .header("te", "trailers, gzip")
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.extensions_mut()
            .insert(ClientAddr("198.51.100.7:5555".parse().unwrap()));
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // hygiene and reverse rewriting on the response
        assert!(res.headers().get("keep-alive").is_none());
        assert_eq!(res.headers()["location"], "https://wso2.com/carbon/admin/");
        let seen = body_text(res).await;
        assert!(seen.starts_with("GET /carbon/?x=1"), "{seen}");
        assert!(seen.contains("x-forwarded-for: 198.51.100.7\n"), "{seen}");
        assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
        assert!(seen.contains("x-forwarded-host: wso2.com\n"), "{seen}");
        assert!(
            seen.contains(&format!("host: {addr}\n")),
            "Host is the member's: {seen}"
        );
        assert!(seen.contains("te: trailers\n"), "{seen}");
        for gone in ["authorization", "keep-alive", "6.6.6.6"] {
            assert!(!seen.contains(gone), "{gone} was forwarded: {seen}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn preserve_host_sends_the_clients_host() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let addr = serve_echo(None).await;
        let r = registry_with("node1", &format!("http://{addr}"));
        let forward = ForwardConfig::new()
            .preserve_host(true)
            .build::<RequestBody<Full<Bytes>>>(r.clone())
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward);
        let req = Request::get("/")
            .header("host", "wso2.com")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let seen = body_text(svc.oneshot(req).await.unwrap()).await;
        assert!(seen.contains("host: wso2.com\n"), "{seen}");
    })
    .await
    .unwrap();
}

/// A member URL with a path: the client's path goes under it, sent in origin form (never
/// the absolute form a client may have written), request after request through one stack.
#[tokio::test]
async fn a_member_at_a_base_path_gets_the_path_under_it_in_origin_form() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let addr = serve_echo(None).await;
        let r = registry_with("node1", &format!("http://{addr}/is/"));
        let forward = ForwardConfig::new()
            .build::<RequestBody<Full<Bytes>>>(r.clone())
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward);
        for (target, sent) in [
            ("http://wso2.com/carbon/?x=1", "GET /is/carbon/?x=1\n"),
            ("/", "GET /is/\n"),
            ("/a%20b?q=%2F", "GET /is/a%20b?q=%2F\n"),
        ] {
            let req = Request::get(target)
                .header("host", "wso2.com")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let seen = body_text(svc.clone().oneshot(req).await.unwrap()).await;
            assert!(seen.starts_with(sent), "{target}: {seen}");
            assert!(seen.contains(&format!("host: {addr}\n")), "{seen}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tls_members_are_reached_by_name_with_their_own_certificates() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let pki = pki("abc.com");
        let addr = serve_echo(Some(pki.acceptor.clone())).await;
        let r = Registry::new();
        r.insert(MemberSpec::new(
            MemberId::new("node1").unwrap(),
            format!("https://abc.com:{}", addr.port()).parse().unwrap(),
        ))
        .unwrap();
        // xyz.com resolves to the same server, which cannot prove it is xyz.com
        r.insert(MemberSpec::new(
            MemberId::new("impostor").unwrap(),
            format!("https://xyz.com:{}", addr.port()).parse().unwrap(),
        ))
        .unwrap();
        let forward = ForwardConfig::new()
            .tls(UpstreamTls::from_pem_roots(pki.ca_pem.as_bytes()).unwrap())
            .resolve("abc.com", [addr])
            .resolve("xyz.com", [addr])
            .build::<RequestBody<Full<Bytes>>>(r.clone())
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward);
        let mut ok = 0;
        let mut refused = 0;
        for _ in 0..4 {
            match svc
                .clone()
                .oneshot(
                    Request::get("/carbon/")
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
                .await
            {
                Ok(res) => {
                    assert_eq!(res.status(), StatusCode::OK);
                    ok += 1;
                }
                Err(e) => {
                    let u = find_upstream_error(&*e).unwrap();
                    assert_eq!(u.kind(), UpstreamErrorKind::Connect, "{e}");
                    assert_eq!(error_status(&*e), StatusCode::BAD_GATEWAY);
                    refused += 1;
                }
            }
        }
        assert_eq!((ok, refused), (2, 2));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_tls_member_closing_a_reused_connection_without_close_notify_races_like_a_plain_one() {
    tokio::time::timeout(Duration::from_secs(20), async {
        // answers a connection's first request; at its second, closes the socket under TLS
        // at once, with no `close_notify` (as many servers' keep-alive timeouts do)
        let pki = pki_speaking("abc.com", &[b"http/1.1"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (acceptor, counted) = (pki.acceptor.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    if tls.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if tls.write_all(ok).await.is_err() || tls.read(&mut buf).await.is_err() {
                        return;
                    }
                    drop(tls.into_inner().0);
                });
            }
        });
        let r = registry_with("node1", &format!("https://abc.com:{}", addr.port()));
        let forward = ForwardConfig::new()
            .tls(UpstreamTls::from_pem_roots(pki.ca_pem.as_bytes()).unwrap())
            .resolve("abc.com", [addr])
            .build::<RequestBody<Full<Bytes>>>(r.clone())
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward);
        for _ in 0..2 {
            let req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            // read whole, so its connection goes back to the pool
            assert_eq!(body_text(res).await, "ok");
        }
        // the second went out again on a new connection: a race, not the member's failure
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        let node1 = r.snapshot().get("node1").unwrap().clone();
        assert_eq!(node1.stats().metrics().resends(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn members_addressed_by_ip_prove_their_tls_name() {
    tokio::time::timeout(Duration::from_secs(20), async {
        // as DNS discovery finds them: an IP in the endpoint, the host name in the certificate
        let pki = pki("abc.com");
        let addr = serve_echo(Some(pki.acceptor.clone())).await;
        let url = format!("https://{addr}");
        let named = Registry::new();
        named
            .insert(
                MemberSpec::new(MemberId::new("node1").unwrap(), url.parse().unwrap())
                    .tls_name("abc.com"),
            )
            .unwrap();
        let config =
            ForwardConfig::new().tls(UpstreamTls::from_pem_roots(pki.ca_pem.as_bytes()).unwrap());
        let get = || {
            Request::get("/carbon/")
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let forward = config
            .clone()
            .build::<RequestBody<Full<Bytes>>>(named.clone())
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BalanceLayer::new(named.clone(), RoundRobin::new()))
            .service(forward);
        let res = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // the authority names the member as SNI does (a server choosing its virtual host by
        // SNI answers 421 when they differ): over HTTP/2, `:authority`, with no `Host`
        let seen = body_text(res).await;
        assert!(
            seen.starts_with(&format!("GET https://abc.com:{}/carbon/\n", addr.port())),
            "{seen}"
        );
        assert!(!seen.contains("\nhost: "), "{seen}");
        // health probes reach it the same way, with the same Host (the member echoes it)
        let probe = HttpProbe::new(config.probe_client(&named).unwrap())
            .path("/health")
            .body_contains(format!("host: abc.com:{}\n", addr.port()));
        let node1 = named.load().get("node1").unwrap().clone();
        assert_eq!(probe.oneshot(node1).await.unwrap(), ProbeResult::Pass);

        // without the name, the IP is what must be proved, and the certificate does not
        let by_ip = registry_with("node1", &url);
        let forward = config
            .build::<RequestBody<Full<Bytes>>>(by_ip.clone())
            .unwrap();
        let err = ServiceBuilder::new()
            .layer(BalanceLayer::new(by_ip, RoundRobin::new()))
            .service(forward)
            .oneshot(get())
            .await
            .unwrap_err();
        assert_eq!(
            find_upstream_error(&*err).unwrap().kind(),
            UpstreamErrorKind::Connect
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let r = registry_with("node1", &format!("http://127.0.0.1:{port}"));
        let forward = ForwardConfig::new()
            .build::<RequestBody<Full<Bytes>>>(r.clone())
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BalanceLayer::new(r.clone(), RoundRobin::new()))
            .service(forward);
        let err = svc
            .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            find_upstream_error(&*err).unwrap().kind(),
            UpstreamErrorKind::Connect
        );
        assert!(!find_upstream_error(&*err).unwrap().maybe_sent());
    })
    .await
    .unwrap();
}

/// A request body of unknown length, as a client's chunked upload is.
struct Chunks(Vec<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let next = (!self.0.is_empty()).then(|| Ok(http_body::Frame::data(self.0.remove(0))));
        std::task::Poll::Ready(next)
    }
}

#[tokio::test]
async fn a_get_with_a_body_of_unknown_length_reaches_the_member_whole() {
    tokio::time::timeout(Duration::from_secs(20), async {
        // a member answering with the length of the body it read
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = service_fn(|req: Request<Incoming>| async move {
                        let n = req
                            .into_body()
                            .collect()
                            .await
                            .map_or(0, |b| b.to_bytes().len());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(n.to_string()))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        let r = registry_with("node1", &format!("http://{addr}"));
        let forward = ForwardConfig::new()
            .build::<RequestBody<Chunks>>(r.clone())
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BalanceLayer::new(r, RoundRobin::new()))
            .service(forward);
        for method in [http::Method::GET, http::Method::POST] {
            let body = Chunks(vec![
                Bytes::from_static(b"hello "),
                Bytes::from_static(b"there"),
            ]);
            let mut req = Request::builder()
                .method(method.clone())
                .uri("/")
                .body(body)
                .unwrap();
            req.extensions_mut()
                .insert(ClientAddr("198.51.100.7:5555".parse().unwrap()));
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(body_text(res).await, "11", "{method}");
        }
    })
    .await
    .unwrap();
}
