//! The server's own HTTP/1.1 path and its hand-over to hyper, seen from a client: one
//! connection carrying requests of both kinds, pipelined in one write, answered in order and
//! framed as hyper frames them. Every test is bounded by a timeout.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{closed_port, echo_member, lb, raw, raw_member, read_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);

/// Reads a head only (a `HEAD` answer has a length and no body).
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    head
}

fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[tokio::test]
async fn pipelined_requests_of_both_kinds_are_answered_in_order_on_one_connection() {
    tokio::time::timeout(LIMIT, async {
        let (member, seen) = echo_member().await;
        let lb = lb(&[member], "", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        // a GET and a HEAD (served by the own path), a POST with a body (hyper's from here
        // on), a GET after it, all in one write
        s.write_all(
            b"GET /1 HTTP/1.1\r\nHost: lb.test\r\n\r\n\
              HEAD /2 HTTP/1.1\r\nHost: lb.test\r\n\r\n\
              POST /3 HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 5\r\n\r\nhello\
              GET /4 HTTP/1.1\r\nHost: lb.test\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        let (head, body) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with("GET /1 HTTP/1.1"), "{body}");
        let get_length = field(&head, "content-length").unwrap().to_owned();
        let head2 = read_head(&mut s, &mut buf).await;
        assert!(head2.starts_with("HTTP/1.1 200 OK\r\n"), "{head2}");
        assert!(field(&head2, "content-length").is_some(), "{head2}");
        let (head3, body3) = read_response(&mut s, &mut buf).await;
        assert!(head3.starts_with("HTTP/1.1 200"), "{head3}");
        let body3 = String::from_utf8(body3).unwrap();
        assert!(
            body3.starts_with("POST /3 HTTP/1.1") && body3.contains("body: 5"),
            "{body3}"
        );
        let (head4, body4) = read_response(&mut s, &mut buf).await;
        assert!(head4.starts_with("HTTP/1.1 200"), "{head4}");
        assert!(String::from_utf8(body4).unwrap().starts_with("GET /4 "));
        assert!(buf.is_empty(), "stray bytes: {buf:?}");
        assert_eq!(
            *seen.lock().unwrap(),
            ["GET /1", "HEAD /2", "POST /3", "GET /4"]
        );
        assert!(!get_length.is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn answers_carry_a_date_one_length_and_no_hop_fields() {
    tokio::time::timeout(LIMIT, async {
        let (member, _) = echo_member().await;
        let lb = lb(&[member], "", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\nTE: trailers\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let (head, body) = read_response(&mut s, &mut buf).await;
        let date = field(&head, "date").expect("a Date field");
        assert!(date.ends_with(" GMT"), "{head}");
        let lengths = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-length:"))
            .count();
        assert_eq!(lengths, 1, "{head}");
        assert_eq!(
            field(&head, "content-length").unwrap(),
            body.len().to_string()
        );
        assert!(field(&head, "transfer-encoding").is_none(), "{head}");
        assert!(field(&head, "connection").is_none(), "{head}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connection_close_is_answered_with_close_and_the_connection_ends() {
    tokio::time::timeout(LIMIT, async {
        let (member, _) = echo_member().await;
        let lb = lb(&[member], "", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        // what follows the closing request is never read as another request
        s.write_all(
            b"GET /a HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n\
              GET /b HTTP/1.1\r\nHost: lb.test\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        let head = &out[..out.find("\r\n\r\n").unwrap()];
        assert_eq!(field(head, "connection"), Some("close"), "{out}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
        assert!(!out.contains("GET /b"), "{out}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_head_hyper_refuses_is_refused_after_answers_on_the_own_path() {
    tokio::time::timeout(LIMIT, async {
        let (member, seen) = echo_member().await;
        let lb = lb(&[member], "", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        s.write_all(
            b"GET /ok HTTP/1.1\r\nHost: lb.test\r\n\r\nGET /bad HTTP/1.1\r\nHost : lb.test\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert_eq!(*seen.lock().unwrap(), ["GET /ok"]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_client_that_closes_its_side_is_answered_only_what_was_read_ahead_as_hyper_does() {
    // hyper (half-close off, its default) and nginx take a client's end of stream during a
    // request as the client leaving, and drop the request; a request already read ahead
    // (pipelined behind the one being answered) is answered first
    tokio::time::timeout(LIMIT, async {
        let (member, seen) = echo_member().await;
        let lb = lb(&[member], "", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        s.write_all(
            b"GET /1 HTTP/1.1\r\nHost: lb.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: lb.test\r\n\r\n",
        )
        .await
        .unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8_lossy(&out);
        assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 1, "{out}");
        assert!(out.contains("GET /1 "), "{out}");
        assert_eq!(seen.lock().unwrap()[0], "GET /1");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_whole_head_over_the_byte_limit_gets_431_even_when_it_ends_in_one_read() {
    tokio::time::timeout(LIMIT, async {
        let (member, seen) = echo_member().await;
        let lb = lb(&[member], "max_header_bytes = 8192", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        let big = format!(
            "GET / HTTP/1.1\r\nHost: lb.test\r\nX-Big: {}\r\n\r\n",
            "a".repeat(10_000)
        );
        // the first part leaves the server's 8 KiB buffer nearly full, so it grows, and the
        // rest, which ends the head past the limit, comes in one read
        s.write_all(&big.as_bytes()[..7_300]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&big.as_bytes()[7_300..]).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(seen.lock().unwrap().is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn http2s_preface_after_a_request_is_not_read_as_http2() {
    tokio::time::timeout(LIMIT, async {
        let (member, seen) = echo_member().await;
        let lb = lb(&[member], "", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        // RFC 9113 §3.4: the preface is a connection's first bytes or nothing; here it
        // follows a request, with an empty SETTINGS frame behind it
        let mut bytes = b"GET /1 HTTP/1.1\r\nHost: lb.test\r\n\r\n".to_vec();
        bytes.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        s.write_all(&bytes).await.unwrap();
        let mut buf = Vec::new();
        let (head, _) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let mut rest = buf;
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        // an HTTP/2 server would answer with its own SETTINGS frame (type 4)
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 400"),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
        assert_eq!(*seen.lock().unwrap(), ["GET /1"]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_idle_connection_closes_at_the_header_read_timeout_when_it_is_the_shorter() {
    tokio::time::timeout(LIMIT, async {
        let (member, _) = echo_member().await;
        // the keep-alive limit is 15 s; the next head's 500 ms run while the connection idles
        let lb = lb(&[member], "header_read_timeout = \"500ms\"", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let (head, _) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let idle = std::time::Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest))
            .await
            .expect("held open past the header-read timeout")
            .unwrap();
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        assert!(
            idle.elapsed() >= Duration::from_millis(400),
            "{:?}",
            idle.elapsed()
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_head_answer_made_by_the_balancer_says_its_length() {
    tokio::time::timeout(LIMIT, async {
        let lb = lb(&[harness::closed_port()], "", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        s.write_all(b"HEAD / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let head = read_head(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 50"), "{head}");
        let n: usize = field(&head, "content-length")
            .expect("a Content-Length, as hyper writes it")
            .parse()
            .unwrap();
        assert!(n > 0, "{head}");
        // and no body after it: the next answer's head comes next
        s.write_all(b"GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
            .await
            .unwrap();
        let next = read_head(&mut s, &mut buf).await;
        assert!(next.starts_with("HTTP/1.1 50"), "{next}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_member_answer_cut_short_is_a_502_or_an_answer_cut_short_never_an_empty_reply() {
    tokio::time::timeout(LIMIT, async {
        // the head promises 100 bytes; the member sends 10 and closes, all at once
        let member = raw_member(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b").await;
        let lb = lb(&[member], "", "", "").await;
        let (mut bad_gateway, mut cut) = (0, 0);
        for _ in 0..20 {
            // (a 502 made before any answer went out leaves the connection open: the client
            // closes it)
            let got = raw(
                lb.addr,
                b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
                Duration::from_secs(5),
            )
            .await;
            if got.starts_with("HTTP/1.1 502 Bad Gateway\r\n") {
                // the member's close was seen before any of the answer went out
                assert!(got.ends_with("\r\n\r\n502 Bad Gateway\n"), "{got:?}");
                assert_eq!(field(&got, "connection"), Some("close"), "{got:?}");
                bad_gateway += 1;
            } else {
                // the head went out first: the client sees the answer end before its length
                assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got:?}");
                assert_eq!(field(&got, "content-length"), Some("100"), "{got:?}");
                assert!(got.ends_with("\r\n\r\nonly ten b"), "{got:?}");
                cut += 1;
            }
        }
        assert_eq!(bad_gateway + cut, 20);
    })
    .await
    .unwrap();
}

/// A member that answers every request with `answer` and closes, the close riding on the
/// answer's last segment (`TCP_CORK` holds it until the close), so the balancer reads the
/// answer and the member's close at once; `answered` counts its answers.
async fn corked_member(answer: &'static [u8], answered: Arc<AtomicUsize>) -> String {
    harness::member(move |mut sock| {
        let answered = answered.clone();
        async move {
            if harness::read_request_head(&mut sock).await.is_none() {
                return;
            }
            socket2::SockRef::from(&sock).set_tcp_cork(true).unwrap();
            let _ = sock.write_all(answer).await;
            answered.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await
}

#[tokio::test]
async fn a_get_whose_member_sends_part_of_its_answer_and_closes_is_answered_by_another() {
    tokio::time::timeout(LIMIT, async {
        // the head promises 10,000 bytes; the member sends 100 and closes, all in one segment:
        // nothing of it has gone to the client, so the GET goes to the other member
        const CUT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n\
            0123456789012345678901234567890123456789012345678901234567890123456789\
            012345678901234567890123456789";
        let answered = Arc::new(AtomicUsize::new(0));
        let cut = corked_member(CUT, answered.clone()).await;
        let (good, seen) = echo_member().await;
        let lb = lb(&[cut, good], "", "", "").await;
        for i in 0..12 {
            let req = format!("GET /{i} HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n");
            let got = raw(lb.addr, req.as_bytes(), Duration::from_secs(5)).await;
            assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{i}: {got:?}");
            assert!(
                got.contains(&format!("\r\n\r\nGET /{i} HTTP/1.1")),
                "{i}: {got:?}"
            );
        }
        assert!(
            answered.load(Ordering::Relaxed) >= 1,
            "the cut member was never tried"
        );
        assert_eq!(seen.lock().unwrap().len(), 12);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_post_whose_member_sends_a_head_and_closes_gets_a_502_or_a_cut_answer_never_nothing() {
    tokio::time::timeout(LIMIT, async {
        // a POST is hyper's to write; the member's head promises 100 bytes, then it closes
        let member = raw_member(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").await;
        let lb = lb(&[member], "", "", "").await;
        let (mut bad_gateway, mut cut) = (0, 0);
        for _ in 0..20 {
            let got = raw(
                lb.addr,
                b"POST / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\
                  Content-Length: 5\r\nX-Request-Id: post-1\r\n\r\nhello",
                Duration::from_secs(5),
            )
            .await;
            if got.starts_with("HTTP/1.1 502 Bad Gateway\r\n") {
                assert!(got.ends_with("\r\n\r\n502 Bad Gateway\n"), "{got:?}");
                assert_eq!(field(&got, "connection"), Some("close"), "{got:?}");
                assert_eq!(field(&got, "x-request-id"), Some("post-1"), "{got:?}");
                bad_gateway += 1;
            } else {
                assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got:?}");
                assert_eq!(field(&got, "content-length"), Some("100"), "{got:?}");
                assert!(got.ends_with("\r\n\r\n"), "{got:?}");
                cut += 1;
            }
        }
        assert_eq!(bad_gateway + cut, 20);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_request_retried_after_a_refused_connection_reaches_the_member_with_its_fields_once() {
    // failover sends the request's own head first and keeps a copy for a retry: what the
    // layers add to the first attempt (forwarding fields, the request id) must not be in
    // the retry twice, and the client's own fields must all be there
    tokio::time::timeout(LIMIT, async {
        let (member, _) = echo_member().await;
        let lb = lb(&[closed_port(), member], "", "", "").await;
        let mut s = TcpStream::connect(lb.addr).await.unwrap();
        let mut buf = Vec::new();
        for i in 0..8 {
            let req = format!(
                "GET /{i} HTTP/1.1\r\nHost: lb.test\r\nX-Forwarded-For: 203.0.113.9\r\n\
                 X-Tag: one-{i}\r\nX-Tag: two-{i}\r\nAccept: */*\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let (head, body) = read_response(&mut s, &mut buf).await;
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            let body = String::from_utf8(body).unwrap();
            let fields: Vec<(String, &str)> = body
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(": "))
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect();
            let all = |name: &str| -> Vec<&str> {
                fields
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| *v)
                    .collect()
            };
            assert_eq!(all("x-forwarded-for"), ["127.0.0.1"], "{body}");
            assert_eq!(
                all("x-tag"),
                [format!("one-{i}"), format!("two-{i}")],
                "{body}"
            );
            assert_eq!(all("accept"), ["*/*"], "{body}");
            for name in [
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-request-id",
                "host",
                "via",
            ] {
                assert!(all(name).len() <= 1, "{name} twice: {body}");
            }
            assert_eq!(all("x-request-id").len(), 1, "{body}");
            assert_eq!(
                field(&head, "x-request-id"),
                all("x-request-id").first().copied(),
                "{head}{body}"
            );
        }
        let dead = lb.registry.load().get("node1").unwrap().clone();
        assert!(dead.stats().view().failures >= 1, "no request was retried");
    })
    .await
    .unwrap();
}
