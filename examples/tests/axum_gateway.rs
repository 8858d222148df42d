//! The `axum_gateway` example against two real member processes: its own route answers,
//! sessions stick, a killed member costs no client an error, members learn the client's
//! address (a forged `X-Forwarded-For` replaced), and the manager page answers. Bounded in
//! requests and time.
#![allow(clippy::unwrap_used)]

#[path = "faults/harness.rs"]
#[allow(dead_code)] // the fault suite's helpers; this test uses the member and the client
mod harness;

#[path = "../axum_gateway/main.rs"]
#[allow(dead_code)] // the example's `main`; the test calls its `gateway`
mod example;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{Http, Member};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.1 request with `extra` header lines (and `Host: gw.test` unless they
/// give one); the whole answer.
async fn raw(addr: SocketAddr, path: &str, extra: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let host = if extra.starts_with("Host:") {
        ""
    } else {
        "Host: gw.test\r\n"
    };
    let req = format!("GET {path} HTTP/1.1\r\n{host}{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_gateway_is_sticky_fails_over_forwards_the_client_and_shows_its_manager() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut members = [
            Member::spawn("node1", None, &[]),
            Member::spawn("node2", None, &[]),
        ];
        let urls: Vec<String> = members
            .iter()
            .map(|m| format!("http://{}", m.addr))
            .collect();
        let (app, manager) = example::gateway("127.0.0.1:0".parse().unwrap(), &urls)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await
        });
        let http = Http::new();
        let base = format!("http://{addr}");

        // the app's own route
        let own = http.get(&format!("{base}/api/hello"), None).await.unwrap();
        assert_eq!(own.body.as_ref(), b"hello from the gateway\n");
        assert_eq!(own.served_by, None);

        // a session sticks to the member that served it first
        let first = http.get(&format!("{base}/"), None).await.unwrap();
        let pinned = first.served_by.clone().unwrap();
        let cookie = first
            .cookie
            .clone()
            .expect("the gateway sets its route cookie");
        assert!(cookie.starts_with("ROUTEID="), "{cookie}");
        for _ in 0..20 {
            let r = http.get(&format!("{base}/"), Some(&cookie)).await.unwrap();
            assert_eq!(r.served_by.as_deref(), Some(pinned.as_str()));
        }

        // members learn the client's address from axum's ConnectInfo; a forged one is replaced
        let seen = raw(addr, "/forwarded", "X-Forwarded-For: 6.6.6.6\r\n").await;
        assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
        assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
        assert!(!seen.contains("6.6.6.6"), "{seen}");
        // a request id made by the gateway reaches the member and comes back to the client
        let id = seen
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .filter(|id| id.len() > 17)
            .unwrap_or_else(|| panic!("no request id in {seen}"))
            .to_owned();
        assert!(
            seen.to_ascii_lowercase()
                .contains(&format!("x-request-id: {id}\r\n")),
            "{seen}"
        );

        // the pinned member dies: the session carries on on the other one, no client error
        let dead = members.iter_mut().find(|m| m.name == pinned).unwrap();
        dead.kill();
        let mut errors = Vec::new();
        for _ in 0..50 {
            match http.get(&format!("{base}/"), Some(&cookie)).await {
                Ok(r)
                    if r.status == StatusCode::OK
                        && r.served_by.as_deref() != Some(pinned.as_str()) => {}
                other => errors.push(format!("{other:?}")),
            }
        }
        assert!(
            errors.is_empty(),
            "{} client errors: {:?}",
            errors.len(),
            errors.first()
        );

        // the manager page, on its own loopback port
        let refused = raw(manager.local_addr(), "/balancer-manager", "").await;
        assert!(
            refused.starts_with("HTTP/1.1 421"),
            "another Host is refused: {refused}"
        );
        let m = manager.local_addr();
        let page = raw(m, "/balancer-manager", &format!("Host: {m}\r\n")).await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("node1") && page.contains("node2"), "{page}");
    })
    .await
    .unwrap();
}
