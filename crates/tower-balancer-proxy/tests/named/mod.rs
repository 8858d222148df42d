//! What the multi-instance tests share: members on loopback that answer with their name, a
//! GET that reports which member answered and the route cookie set, and scratch folders.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A plain HTTP client with a connection pool.
pub type Http = Client<HttpConnector, Empty<Bytes>>;

/// A new client.
pub fn client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A member that answers with its name.
pub async fn member(name: &'static str) -> SocketAddr {
    slow_member(name, Duration::ZERO).await
}

/// A member that answers with its name after `delay`.
pub async fn slow_member(name: &'static str, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |_: Request<Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                });
                let b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = b.serve_connection(TokioIo::new(sock), svc).await;
            });
        }
    });
    addr
}

/// GET / on `lb` with an optional cookie and `x-user` hash key; the member's name and the
/// route cookie set, if any. Anything but 200 fails the test.
pub async fn get(
    client: &Http,
    lb: SocketAddr,
    cookie: Option<&str>,
    user: Option<&str>,
) -> (String, Option<String>) {
    let mut req = Request::get(format!("http://{lb}/"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(u) = user {
        req = req.header("x-user", u);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let set = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8(body.to_vec()).unwrap(), set)
}

/// A fresh scratch folder named for `what`.
pub fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tb-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
