//! Which answers count against a member, in a balancer built from a file: the gateway
//! failures (502, 503, 504) and what `failonstatus` names, not an application's 500. Any
//! client that found a URL answering 500 ejected a healthy member by asking for it five
//! times, and moved every session on it (hostile round 5).
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{lb, metrics, raw, raw_member};

/// `node1`'s ejections after twelve requests to a member answering `answer`, with `balancer`
/// lines in the file.
async fn ejections_after_twelve(answer: &'static [u8], balancer: &str) -> String {
    let member = raw_member(answer).await;
    let lb = lb(
        &[member],
        "",
        balancer,
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    for _ in 0..12 {
        let out = raw(
            lb.addr,
            b"GET /err HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 5"), "{out}");
    }
    let m = metrics(&lb).await;
    m.lines()
        .find(|l| l.starts_with("lb_member_ejections_total{"))
        .unwrap_or_else(|| panic!("{m}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned()
}

const FIVE_HUNDRED: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n";

#[tokio::test]
async fn an_applications_500_does_not_count_against_its_member() {
    assert_eq!(ejections_after_twelve(FIVE_HUNDRED, "").await, "0");
}

#[tokio::test]
async fn gateway_failures_and_failonstatus_count() {
    let unavailable = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
    assert_ne!(ejections_after_twelve(unavailable, "").await, "0");
    // Apache's `failonstatus` puts the member in error for the statuses it names
    assert_ne!(
        ejections_after_twelve(FIVE_HUNDRED, "failonstatus = [500]").await,
        "0"
    );
}
