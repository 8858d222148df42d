//! A member's answer as the client gets it, over both member client paths (a `GET` takes
//! the own HTTP/1.1 path, a `POST` with a body hyper's client): no hop-by-hop field, no field
//! the member's `Connection` names, no `TE` (a request's field), and a `Content-Length` only
//! where it is true, once. The member is a raw TCP one on 127.0.0.1 writing fixed answers, so
//! that it can send what hyper's server never would. Every test is bounded by a timeout.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{ServiceBuilder, ServiceExt};
use tower_balancer::balance::{BalanceLayer, RequestBody};
use tower_balancer::client::ClientAddr;
use tower_balancer::registry::{MemberId, MemberSpec, Registry};
use tower_balancer::strategy::RoundRobin;
use tower_balancer_proxy::forward::ForwardConfig;

/// Every hop-by-hop field there is, one the member's `Connection` names, and a repeated
/// length.
const LISTED: &str = "HTTP/1.1 200 OK\r\n\
    Connection: keep-alive, X-Secret\r\n\
    X-Secret: 1\r\n\
    Keep-Alive: timeout=5\r\n\
    Proxy-Connection: keep-alive\r\n\
    Proxy-Authenticate: Basic\r\n\
    TE: trailers\r\n\
    Trailer: x-sum\r\n\
    Upgrade: h2c\r\n\
    HTTP2-Settings: AAMAAABkAAQAAP__\r\n\
    X-Kept: yes\r\n\
    Content-Length: 5, 5\r\n\
    \r\n\
    hello";

/// The common answer: only `Connection: keep-alive` to take away, a length on two lines.
const USUAL: &str = "HTTP/1.1 200 OK\r\n\
    Connection: keep-alive\r\n\
    Content-Length: 5\r\n\
    X-Kept: yes\r\n\
    Content-Length: 5\r\n\
    TE: trailers\r\n\
    \r\n\
    hello";

/// Chunked with a `Content-Length` beside it: read by the chunks, no length passed on.
const CHUNKED: &str = "HTTP/1.1 200 OK\r\n\
    Transfer-Encoding: chunked\r\n\
    Content-Length: 99\r\n\
    X-Kept: yes\r\n\
    \r\n\
    5\r\nhello\r\n0\r\n\r\n";

/// A member answering every request on a connection with `answer`, after reading its head
/// and its `Content-Length` body.
async fn member(answer: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    while buf.len() < end + 4 + length {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + length);
                    if sock.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The answer's fields and body as the client gets them, for a `GET` and for a `POST`.
async fn both_paths(answer: &'static str) -> Vec<(Method, HeaderMap, Bytes)> {
    let methods = [Method::GET, Method::POST, Method::GET, Method::POST];
    exchanges(answer, &methods)
        .await
        .into_iter()
        .map(|(m, r)| {
            let (h, b) = r.unwrap_or_else(|e| panic!("{m}: {e}"));
            (m, h, b)
        })
        .collect()
}

/// Each of `methods` in turn (a `POST` with a body) to a member answering `answer`: the
/// answer's fields and body, or the forwarder's error.
async fn exchanges(
    answer: &'static str,
    methods: &[Method],
) -> Vec<(Method, Result<(HeaderMap, Bytes), String>)> {
    let addr = member(answer).await;
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        format!("http://{addr}").parse().unwrap(),
    ))
    .unwrap();
    let forward = ForwardConfig::new()
        .build::<RequestBody<Full<Bytes>>>(r.clone())
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(BalanceLayer::new(r, RoundRobin::new()))
        .service(forward);
    let mut seen = Vec::new();
    for method in methods.iter().cloned() {
        let body = if method == Method::POST { "abc" } else { "" };
        let mut req = Request::builder()
            .method(method.clone())
            .uri("/")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        req.extensions_mut()
            .insert(ClientAddr("198.51.100.7:5555".parse().unwrap()));
        let got = match svc.clone().oneshot(req).await {
            Ok(res) => {
                let (parts, body) = res.into_parts();
                match body.collect().await {
                    Ok(b) => Ok((parts.headers, b.to_bytes())),
                    Err(e) => Err(format!("body: {e}")),
                }
            }
            Err(e) => {
                // the whole chain: the attempt's error wraps the member client's
                let mut text = e.to_string();
                let mut source = e.source();
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                Err(text)
            }
        };
        seen.push((method, got));
    }
    seen
}

fn assert_clean(headers: &HeaderMap, method: &Method) {
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
        "http2-settings",
        "transfer-encoding",
    ] {
        assert!(
            headers.get(gone).is_none(),
            "{method}: {gone} in {headers:?}"
        );
    }
    assert_eq!(headers["x-kept"], "yes", "{method}");
}

#[tokio::test]
async fn hop_by_hop_fields_and_named_ones_never_reach_the_client() {
    tokio::time::timeout(Duration::from_secs(20), async {
        for answer in [LISTED, USUAL] {
            for (method, headers, body) in both_paths(answer).await {
                assert_clean(&headers, &method);
                let lengths: Vec<_> = headers.get_all("content-length").iter().collect();
                assert_eq!(lengths, ["5"], "{method}: {headers:?}");
                assert_eq!(body, "hello", "{method}");
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_chunked_answer_passes_no_content_length() {
    tokio::time::timeout(Duration::from_secs(20), async {
        for (method, headers, body) in both_paths(CHUNKED).await {
            assert_clean(&headers, &method);
            assert!(
                headers.get("content-length").is_none(),
                "{method}: {headers:?}"
            );
            assert_eq!(body, "hello", "{method}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_field_called_close_goes_with_connection_close() {
    const ANSWER: &str = "HTTP/1.1 200 OK\r\nClose: x\r\nConnection: close\r\nContent-Length: 005\r\nX-Kept: yes\r\n\r\nhello";
    tokio::time::timeout(Duration::from_secs(20), async {
        for (method, headers, body) in both_paths(ANSWER).await {
            assert_clean(&headers, &method);
            assert!(headers.get("close").is_none(), "{method}: {headers:?}");
            // leading zeros are not passed on
            assert_eq!(headers["content-length"], "5", "{method}");
            assert_eq!(body, "hello", "{method}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_head_answer_with_disagreeing_lengths_passes_none() {
    const ANSWER: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\nX-Kept: yes\r\n\r\n";
    tokio::time::timeout(Duration::from_secs(20), async {
        for (method, got) in exchanges(ANSWER, &[Method::HEAD, Method::HEAD]).await {
            let (headers, _) = got.unwrap();
            assert_clean(&headers, &method);
            assert!(headers.get("content-length").is_none(), "{headers:?}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_refused_and_an_empty_element_is_not_one() {
    const GZIP: &str =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    const EMPTY: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\nX-Kept: yes\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    tokio::time::timeout(Duration::from_secs(20), async {
        for (method, got) in exchanges(GZIP, &[Method::GET, Method::POST]).await {
            // the body would reach the client still gzipped with nothing saying so
            let e = got.err().unwrap_or_else(|| panic!("{method}: forwarded"));
            assert!(
                e.contains("coding") || e.contains("transfer"),
                "{method}: {e}"
            );
        }
        // `chunked,` is chunked; hyper's client reads it as it reads it (not asserted)
        for (method, got) in exchanges(EMPTY, &[Method::GET, Method::GET]).await {
            let (headers, body) = got.unwrap();
            assert_clean(&headers, &method);
            assert_eq!(body, "hello", "{method}");
        }
    })
    .await
    .unwrap();
}
