//! H: what the balancer built from a file does with no setting touched, tried as a hostile
//! client and as an operator would: dead and hung members, silent bodies, forged headers,
//! odd hosts, h2c, HTTP/1.0 members, pipelining, broken chunked framing, the manager.
#![allow(clippy::unwrap_used)]

#[path = "safe/harness.rs"]
mod harness;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{
    closed_port, echo_member, h2_client, http10_member, lb, raw, raw_member, read_response,
    recording_member,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn forged_forwarding_headers_never_reach_members() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "", "", "").await;
    let out = raw(
        lb.addr,
        b"GET /who HTTP/1.1\r\nHost: lb.test\r\nForwarded: for=1.2.3.4;proto=https\r\n\
          X-Real-IP: 1.2.3.4\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\
          X-Forwarded-Host: evil.test\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /admin\r\n\
          X_Forwarded_For: 1.2.3.4\r\nTrue-Client-IP: 1.2.3.4\r\nCF-Connecting-IP: 1.2.3.4\r\n\
          X-Original-URL: /admin\r\nConnection: close\r\n\r\n",
        5 * SECOND,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = out.to_ascii_lowercase();
    assert!(!seen.contains("forwarded: for=1.2.3.4"), "{out}");
    assert!(!seen.contains("x-real-ip"), "{out}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{out}");
    assert!(seen.contains("x-forwarded-proto: http\n"), "{out}");
    assert!(seen.contains("x-forwarded-host: lb.test\n"), "{out}");
    assert!(
        !seen.contains("1.2.3.4") && !seen.contains("evil.test"),
        "{out}"
    );
}

#[tokio::test]
async fn hosts_with_userinfo_or_bad_ports_get_400_even_with_preserve_host() {
    let (member, seen) = echo_member().await;
    let lb = lb(&[member], "", "preserve_host = true", "").await;
    for host in [
        "lb.test@evil.test",
        "lb.test:abc",
        "lb.test:99999",
        "lb.test:0",
        "lb.test/x",
    ] {
        for version in ["1.1", "1.0"] {
            let req = format!("GET / HTTP/{version}\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let out = raw(lb.addr, req.as_bytes(), 5 * SECOND).await;
            assert!(
                out.starts_with(&format!("HTTP/{version} 400")),
                "{host} {version}: {out}"
            );
        }
    }
    assert!(seen.lock().unwrap().is_empty(), "a member saw a bad Host");
    let out = raw(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: lb.test:8080\r\nConnection: close\r\n\r\n",
        5 * SECOND,
    )
    .await;
    assert!(out.contains("host: lb.test:8080\n"), "{out}");
}

#[tokio::test]
async fn h2c_and_unlisted_upgrades_are_dropped_and_served_plain() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "", "", "").await;
    for (upgrade, extra) in [
        ("h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
        ("foo/1", ""),
        ("websocket, h2c", ""),
    ] {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
             Upgrade: {upgrade}\r\n{extra}\r\n"
        );
        let out = raw(lb.addr, req.as_bytes(), 5 * SECOND).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{upgrade}: {out}");
        let lower = out.to_ascii_lowercase();
        assert!(!lower.contains("\nupgrade:"), "{upgrade}: {out}");
        assert!(!lower.contains("http2-settings:"), "{upgrade}: {out}");
    }
    // WebSocket is on the list: its handshake reaches the member with Upgrade
    let out = raw(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        2 * SECOND,
    )
    .await;
    assert!(
        out.to_ascii_lowercase().contains("upgrade: websocket"),
        "{out}"
    );
}

#[tokio::test]
async fn an_http10_member_neither_downgrades_nor_closes_the_client() {
    let member = http10_member().await;
    let lb = lb(&[member], "", "", "").await;
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        assert_eq!(body, b"old");
    }
}

#[tokio::test]
async fn pipelined_requests_take_at_most_twice_as_long_as_sequential_ones() {
    const N: usize = 1000;
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "", "", "").await;
    let one = b"GET /p HTTP/1.1\r\nHost: lb.test\r\n\r\n";
    // warm the member pool
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    let mut buf = Vec::new();
    let start = Instant::now();
    for _ in 0..N {
        s.write_all(one).await.unwrap();
        let (head, _) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"));
    }
    let sequential = start.elapsed();
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    let mut buf = Vec::new();
    let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * N).collect();
    let start = Instant::now();
    let (mut rd, mut wr) = s.split();
    let write = async {
        wr.write_all(&all).await.unwrap();
    };
    let read = async {
        let (mut n, mut scanned) = (0, 0);
        let mut chunk = [0u8; 65536];
        // count responses by their status lines, scanning each byte once
        while n < N {
            let k = tokio::io::AsyncReadExt::read(&mut rd, &mut chunk)
                .await
                .unwrap();
            assert!(k > 0, "closed after {n} responses");
            buf.extend_from_slice(&chunk[..k]);
            n += buf[scanned..]
                .windows(12)
                .filter(|w| w == b"HTTP/1.1 200")
                .count();
            scanned = buf.len().saturating_sub(11);
        }
    };
    tokio::join!(write, read);
    let pipelined = start.elapsed();
    println!("{N} sequential: {sequential:?}, pipelined: {pipelined:?}");
    assert!(
        pipelined <= sequential * 2 + Duration::from_millis(200),
        "pipelined {pipelined:?} against sequential {sequential:?}"
    );
}

#[tokio::test]
async fn a_chunked_body_broken_mid_stream_gets_400_and_never_reaches_a_member_complete() {
    let (member, seen) = recording_member().await;
    let lb = lb(&[member], "", "", "").await;
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // a chunk longer than its size line says
    s.write_all(b"3\r\nabcdef\r\n0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        5 * SECOND,
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out),
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_incomplete_and_closed(&seen).await;
}

#[tokio::test]
async fn a_silent_request_body_gets_408_within_the_idle_limit() {
    let (member, seen) = recording_member().await;
    let lb = lb(&[member], "request_body_timeout = \"300ms\"", "", "").await;
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"POST /slow HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        5 * SECOND,
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out),
    )
    .await;
    let took = start.elapsed();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(took < 2 * SECOND, "took {took:?}");
    assert_incomplete_and_closed(&seen).await;
}

/// Every connection a recording member got was closed by the balancer before a complete
/// request arrived: no chunked terminator, fewer body bytes than the Content-Length.
async fn assert_incomplete_and_closed(seen: &std::sync::Mutex<Vec<Vec<u8>>>) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap();
    assert!(
        !seen.is_empty(),
        "the request never reached the member at all"
    );
    for conn in seen.iter() {
        let text = String::from_utf8_lossy(conn);
        let text = text
            .strip_suffix(harness::CLOSED)
            .unwrap_or_else(|| panic!("the member's connection was left open: {text:?}"));
        assert!(
            !text.contains("0\r\n\r\n"),
            "a member saw a complete body: {text:?}"
        );
        if let Some(cl) = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            assert!(body.len() < cl.trim().parse::<usize>().unwrap(), "{text:?}");
        }
    }
}

#[tokio::test]
async fn a_dead_member_costs_no_client_an_error_and_no_post_is_sent_twice() {
    // no probe: only failover and passive ejection stand between clients and the dead port
    let lb = dead_member_load("").await;
    // and the dead member was ejected after a few connect failures
    let dead = lb.registry.load().get("node1").unwrap().clone();
    assert!(
        dead.stats().view().requests <= 10,
        "{:?}",
        dead.stats().view()
    );
}

#[tokio::test]
async fn with_ejection_off_a_dead_member_still_costs_no_client_an_error() {
    // every other request meets the dead port: resending them must not wait on the budget
    let lb =
        dead_member_load("[balancer.ejection]\nconnect_failures = 0\nconsecutive_failures = 0\n")
            .await;
    let dead = lb.registry.load().get("node1").unwrap().clone();
    assert!(
        dead.stats().view().failures >= 500,
        "{:?}",
        dead.stats().view()
    );
}

/// 8 clients, 2,000 requests, GET and POST in turn, against a closed port and a member;
/// asserts no client error and no POST seen twice.
async fn dead_member_load(tail: &str) -> harness::Lb {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 250;
    let (member, seen) = echo_member().await;
    let lb = lb(&[closed_port(), member], "", "", tail).await;
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let posts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (errors, posts, addr) = (errors.clone(), posts.clone(), lb.addr);
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            for i in 0..PER_CLIENT {
                let req = if i % 2 == 0 {
                    format!("GET /get/{c}/{i} HTTP/1.1\r\nHost: lb.test\r\n\r\n")
                } else {
                    posts.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "POST /post/{c}/{i} HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 4\r\n\r\nbody"
                    )
                };
                s.write_all(req.as_bytes()).await.unwrap();
                let (head, _) = read_response(&mut s, &mut buf).await;
                if !head.starts_with("HTTP/1.1 200") {
                    errors.lock().unwrap().push(head.lines().next().unwrap_or("").to_owned());
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} client errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let seen = seen.lock().unwrap().clone();
    let posts_seen: Vec<_> = seen.iter().filter(|l| l.starts_with("POST")).collect();
    let unique: HashSet<_> = posts_seen.iter().collect();
    assert_eq!(
        posts_seen.len(),
        unique.len(),
        "a POST reached a member twice"
    );
    assert_eq!(posts_seen.len(), posts.load(Ordering::Relaxed));
    lb
}

#[tokio::test]
async fn a_hung_member_costs_a_client_one_timeout_at_most() {
    let (hung, _) = recording_member().await;
    let (member, _) = echo_member().await;
    let lb = lb(&[hung, member], "", "timeout = \"400ms\"", "").await;
    let mut worst = Duration::ZERO;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let method = if i % 3 == 2 { "POST" } else { "GET" };
        let req = format!(
            "{method} /h/{i} HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let start = Instant::now();
        let out = raw(lb.addr, req.as_bytes(), 5 * SECOND).await;
        worst = worst.max(start.elapsed());
        statuses.push((method, out.get(9..12).unwrap_or("").to_owned()));
    }
    assert!(
        worst < Duration::from_millis(1500),
        "a client waited {worst:?}"
    );
    for (method, status) in &statuses {
        match *method {
            // an idempotent request that timed out went to the other member
            "GET" => assert_eq!(status, "200", "{statuses:?}"),
            // a POST that may have been processed is not resent: 504 or the other's 200
            _ => assert!(status == "200" || status == "504", "{statuses:?}"),
        }
    }
}

#[tokio::test]
async fn the_manager_answers_only_its_own_names_and_paths() {
    let (member, _) = echo_member().await;
    let lb = lb(
        &[member],
        "",
        "",
        "[manager]\nlisten = \"127.0.0.1:0\"\nnames = [\"lb-admin.internal\"]\n",
    )
    .await;
    let m = lb.manager.unwrap();
    let get = |host: String, path: &'static str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        async move { raw(m, req.as_bytes(), 5 * SECOND).await }
    };
    let evil = get(format!("evil.test:{}", m.port()), "/balancer-manager").await;
    assert!(evil.starts_with("HTTP/1.1 421"), "{evil}");
    assert!(!evil.contains("nonce"), "{evil}");
    for host in [
        m.to_string(),
        format!("localhost:{}", m.port()),
        "lb-admin.internal".into(),
    ] {
        let ok = get(host.clone(), "/balancer-manager").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{host}: {ok}");
    }
    // its paths: the page and, since issue J, Prometheus metrics; nothing else
    let metrics = get(m.to_string(), "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("application/openmetrics-text"),
        "{metrics}"
    );
    let other = get(m.to_string(), "/server-status").await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let evil = get(format!("evil.test:{}", m.port()), "/metrics").await;
    assert!(evil.starts_with("HTTP/1.1 421"), "{evil}");
}

#[tokio::test]
async fn with_every_member_down_panic_mode_tries_them_and_without_it_clients_get_503() {
    // two dead ports, probed every 100 ms: both are down from the start
    let probe = "[balancer.health]\nmethod = \"TCP\"\ninterval = \"100ms\"\n";
    let get = b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n";
    // default (panic threshold 0.5): health is ignored, the members are tried, 502
    let panicking = lb(&[closed_port(), closed_port()], "", "", probe).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(panicking.registry.load().is_panic());
    let out = raw(panicking.addr, get, 5 * SECOND).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    // the balancer's own answer carries the request's id, as the members' answers do
    let traced =
        b"GET / HTTP/1.1\r\nHost: lb.test\r\nX-Request-Id: trace-me\r\nConnection: close\r\n\r\n";
    let out = raw(panicking.addr, traced, 5 * SECOND).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("\r\nx-request-id: trace-me\r\n"),
        "{out}"
    );
    // panic mode off: nothing is eligible, 503 at once
    let strict = lb(
        &[closed_port(), closed_port()],
        "",
        "panic_threshold = 0.0",
        probe,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!strict.registry.load().is_panic());
    let out = raw(strict.addr, get, 5 * SECOND).await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("\r\nx-request-id: "),
        "{out}"
    );
}

#[tokio::test]
async fn apaches_clear_route_cookie_can_be_refused_in_signed_mode() {
    let (one, _) = echo_member().await;
    let (two, _) = echo_member().await;
    let one_host = one.trim_start_matches("http://").to_owned();
    let req =
        b"GET / HTTP/1.1\r\nHost: lb.test\r\nCookie: ROUTEID=.node1\r\nConnection: close\r\n\r\n";
    let on_node1 = |out: &str| out.contains(&format!("host: {one_host}\n"));
    // by default (a migration aid) the clear form pins the session to node1
    let lb1 = lb(&[one.clone(), two.clone()], "", "", "").await;
    for _ in 0..6 {
        assert!(on_node1(&raw(lb1.addr, req, 5 * SECOND).await));
    }
    // refused: the cookie is ignored and requests spread
    let lb2 = lb(&[one, two], "", "cookie_accept_apache = false", "").await;
    let mut node1 = 0;
    for _ in 0..6 {
        node1 += usize::from(on_node1(&raw(lb2.addr, req, 5 * SECOND).await));
    }
    assert!(node1 < 6, "the clear cookie still pinned every request");
}

#[tokio::test]
async fn a_member_sending_both_lengths_never_makes_the_client_misread_the_body() {
    // chunked framing wins (RFC 9112 §6.3): the member's Content-Length must not reach the
    // client, or it reads 3 bytes of a 48-byte body and takes the rest for the next answer
    let member = raw_member(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          30\r\n012345678901234567890123456789012345678901234567\r\n0\r\n\r\n",
    )
    .await;
    let lb = lb(&[member], "", "", "").await;
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length: 3"),
        "{head}"
    );
    assert_eq!(body.len(), 48, "{head}");
}

#[tokio::test]
async fn a_switch_the_client_never_asked_for_is_a_bad_gateway() {
    let member = raw_member(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
    )
    .await;
    let lb = lb(&[member], "", "", "").await;
    // nothing asked, h2c (not on the list), and a WebSocket the member answers with h2c: a
    // tunnel of a protocol the client never asked for (hostile round 5)
    for extra in [
        "",
        "Upgrade: h2c\r\nConnection: upgrade\r\n",
        "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: lb.test\r\n{extra}Connection: close\r\n\r\n");
        let out = raw(lb.addr, req.as_bytes(), 5 * SECOND).await;
        assert!(out.starts_with("HTTP/1.1 502"), "{extra:?}: {out}");
    }
}

#[tokio::test]
async fn the_request_targets_authority_wins_over_host_and_names_http() {
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "", "preserve_host = true", "").await;
    let out = raw(
        lb.addr,
        b"GET http://other.test/x HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
        5 * SECOND,
    )
    .await;
    assert!(out.contains("host: other.test\n"), "{out}");
    assert!(out.contains("x-forwarded-host: other.test\n"), "{out}");
    let ftp = raw(
        lb.addr,
        b"GET ftp://lb.test/x HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
        5 * SECOND,
    )
    .await;
    assert!(ftp.starts_with("HTTP/1.1 400"), "{ftp}");
}

#[tokio::test]
async fn an_http2_request_whose_host_disagrees_with_its_authority_is_refused() {
    let (member, seen) = echo_member().await;
    let lb = lb(&[member], "", "preserve_host = true", "").await;
    let mut send = h2_client(lb.addr).await;
    let ask = |host: &'static str| {
        http::Request::get("http://lb.test/x")
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // RFC 9113 §8.3.1: one request naming two hosts is malformed (the Host was dropped)
    let res = send.send_request(ask("evil.test")).await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(seen.lock().unwrap().is_empty(), "it reached the member");
    let res = send.send_request(ask("LB.test:80")).await.unwrap();
    assert_eq!(res.status(), 200, "the same host, told twice");
}

#[tokio::test]
async fn an_http2_clients_cookie_crumbs_reach_the_member_as_one_cookie() {
    use http_body_util::BodyExt;
    let (member, _) = echo_member().await;
    let lb = lb(&[member], "", "", "").await;
    let mut send = h2_client(lb.addr).await;
    // RFC 9113 §8.2.3: a client may send each pair as a field of its own
    let req = http::Request::get("http://lb.test/x")
        .header("cookie", "a=1")
        .header("cookie", "JSESSIONID=abc")
        .header("cookie", "b=2")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    let lines: Vec<_> = seen.lines().filter(|l| l.starts_with("cookie:")).collect();
    assert_eq!(lines, ["cookie: a=1; jsessionid=abc; b=2"], "{seen}");
}

#[tokio::test]
async fn an_http2_request_over_the_field_count_gets_431_as_an_http1_one_does() {
    let ask = |fields: usize| {
        let mut req = http::Request::get("http://lb.test/x");
        for i in 0..fields {
            req = req.header(format!("x-f{i}"), "v");
        }
        req.body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let h1 = |fields: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: lb.test\r\n{}Connection: close\r\n\r\n",
            (2..fields)
                .map(|i| format!("x-f{i}: v\r\n"))
                .collect::<String>()
        )
    };
    // the default limit, 100 fields, HTTP/1's (the bytes stay well under 16 KiB)
    let (member, seen) = echo_member().await;
    let lb_default = lb(std::slice::from_ref(&member), "", "", "").await;
    let mut send = h2_client(lb_default.addr).await;
    let res = send.send_request(ask(101)).await.unwrap();
    assert_eq!(res.status(), 431);
    assert!(seen.lock().unwrap().is_empty(), "it reached the member");
    // one the member (hyper's server, 100 fields too) can take with ours added
    let res = send.send_request(ask(90)).await.unwrap();
    assert_eq!(res.status(), 200, "under the limit, on the same connection");
    // a browser's cookie, a pair a field: one field, as it reaches the member
    let mut crumbs = http::Request::get("http://lb.test/x");
    for i in 0..150 {
        crumbs = crumbs.header("cookie", format!("c{i}=v"));
    }
    let crumbs = crumbs
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(crumbs).await.unwrap().status(), 200);
    // and an operator's own limit, on both protocols
    let lb_ten = lb(&[member], "max_headers = 10", "", "").await;
    let mut send = h2_client(lb_ten.addr).await;
    assert_eq!(send.send_request(ask(11)).await.unwrap().status(), 431);
    assert_eq!(send.send_request(ask(10)).await.unwrap().status(), 200);
    let out = raw(lb_ten.addr, h1(11).as_bytes(), 5 * SECOND).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let out = raw(lb_ten.addr, h1(10).as_bytes(), 5 * SECOND).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn an_http1_target_in_authority_form_gets_400() {
    let (member, seen) = echo_member().await;
    let lb = lb(&[member], "", "", "").await;
    for target in ["evil.test", "evil.test:80", "x:1"] {
        for method in ["GET", "POST"] {
            let req = format!(
                "{method} {target} HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
            let out = raw(lb.addr, req.as_bytes(), 5 * SECOND).await;
            assert!(out.starts_with("HTTP/1.1 400"), "{method} {target}: {out}");
        }
    }
    assert!(seen.lock().unwrap().is_empty(), "a member saw one");
}

#[tokio::test]
async fn a_204_loses_its_content_length_so_the_next_answer_is_not_swallowed() {
    let member = raw_member(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello").await;
    let lb = lb(&[member], "", "", "").await;
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: lb.test\r\n\r\nGET /b HTTP/1.1\r\nHost: lb.test\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let (head, body) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 204"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{head}"
        );
        assert!(body.is_empty());
    }
}

#[tokio::test]
async fn oversized_or_impossible_member_answers_are_bad_gateways() {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let big = BIG.get_or_init(|| {
        let mut v = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        v.extend(std::iter::repeat_n(b'a', 200_000));
        v.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        v
    });
    let get = b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n";
    for answer in [
        &big[..],
        b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok".as_slice(),
    ] {
        let lb = lb(&[raw_member(answer).await], "", "", "").await;
        let out = raw(lb.addr, get, 5 * SECOND).await;
        assert!(
            out.starts_with("HTTP/1.1 502"),
            "{}",
            &out[..out.len().min(80)]
        );
    }
}

#[tokio::test]
async fn the_asterisk_target_is_for_options_alone() {
    let (member, seen) = echo_member().await;
    let lb = lb(&[member], "", "", "").await;
    let out = raw(
        lb.addr,
        b"GET * HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
        5 * SECOND,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(seen.lock().unwrap().is_empty());
}
