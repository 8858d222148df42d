//! `balancer.pass_headers`: from a client that is not a trusted proxy, only the headers
//! named reach a member (with those every request keeps), over real sockets to a member
//! that echoes what it got; a trusted proxy's pass as they are, and a name that could never
//! pass is refused with its key.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::path::Path;
use std::time::Duration;

use harness::{echo_member, lb, raw};
use tower_balancer_proxy::config::ConfigFile;

const SECOND: Duration = Duration::from_secs(1);

/// A POST with a body, a cookie, headers listed and not, and a forged forwarding header.
const REQUEST: &[u8] = b"POST /form HTTP/1.1\r\nHost: lb.test\r\nAccept: text/html\r\n\
    Cookie: JSESSIONID=abc.node1\r\nX-Tenant-Admin: yes\r\nX_Debug: 1\r\n\
    X-Forwarded-For: 1.2.3.4\r\nUser-Agent: curl/8\r\nX-Request-Id: req-7\r\n\
    Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\
    Connection: close\r\n\r\na=b";

/// The header names the echo member saw, lower case, in `out`.
fn seen(out: &str) -> Vec<String> {
    let (_, body) = out.split_once("\r\n\r\n").unwrap_or(("", ""));
    let mut names: Vec<String> = body
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": ").map(|(n, _)| n.to_ascii_lowercase()))
        .filter(|n| n != "body")
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_untrusted_client_gets_only_the_listed_headers_to_a_member() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "", "pass_headers = [\"Accept\", \"cookie\"]", "").await;
    let out = raw(lb.addr, REQUEST, 5 * SECOND).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(
        seen(&out),
        [
            "accept",
            "content-length",
            "content-type",
            "cookie",
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-request-id"
        ],
        "{out}"
    );
    assert!(out.contains("x-forwarded-for: 127.0.0.1\n"), "{out}");
    assert!(out.contains("x-request-id: req-7\n"), "{out}");
    assert!(out.contains("body: 3\n"), "{out}");
}

#[tokio::test]
async fn a_websocket_handshake_passes_whatever_the_list() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "", "pass_headers = []", "").await;
    let out = raw(
        lb.addr,
        b"GET /ws HTTP/1.1\r\nHost: lb.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: chat\r\nOrigin: http://lb.test\r\n\r\n",
        2 * SECOND,
    )
    .await;
    let names = seen(&out);
    for n in [
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
    ] {
        assert!(names.iter().any(|s| s == n), "{n} not passed: {out}");
    }
    assert!(!names.iter().any(|s| s == "origin"), "{out}");
}

#[tokio::test]
async fn a_trusted_proxys_headers_pass_as_they_are() {
    let (member, _) = echo_member().await;
    let lb = lb(
        &[member],
        "",
        "pass_headers = [\"accept\"]\ntrusted_proxies = [\"127.0.0.1\"]",
        "",
    )
    .await;
    let out = raw(lb.addr, REQUEST, 5 * SECOND).await;
    let names = seen(&out);
    for n in ["x-tenant-admin", "x_debug", "user-agent", "cookie"] {
        assert!(names.iter().any(|s| s == n), "{n} not passed: {out}");
    }
    assert!(
        out.contains("x-forwarded-for: 1.2.3.4, 127.0.0.1\n"),
        "{out}"
    );
}

#[test]
fn a_name_that_could_never_pass_is_refused_with_its_key() {
    for (list, says) in [
        ("[\"accept\", \"x-real-ip\"]", "cannot be passed"),
        ("[\"accept\", \"no such\"]", "is not a header name"),
    ] {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nserver_name = \"lb.test\"\n\
             [balancer]\nname = \"b\"\npass_headers = {list}\n\
             [[balancer.member]]\nurl = \"http://127.0.0.1:9\"\nroute = \"n1\"\n"
        );
        let e = ConfigFile::from_toml(&text, Path::new("lb.toml"))
            .map(drop)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pass_headers") && e.contains(says), "{e}");
    }
}
