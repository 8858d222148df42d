//! HTTP/2 members (TLS, ALPN `h2`) behind a balancer built from a file, over real sockets:
//! what they are sent (`:authority`, and no `Host` beside it, which nginx before 1.25
//! refuses), a graceful `GOAWAY` or a `REFUSED_STREAM` that leaves a request unprocessed
//! (sent again, whatever its method, and not held against the member), and a client's
//! upload that fails on its way to one (the client's failure, not the member's).
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "safe/harness.rs"]
mod harness;
#[path = "tls_pki/mod.rs"]
mod tls_pki;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use harness::{lb, metrics, raw};

const SECOND: Duration = Duration::from_secs(1);

/// What a member does with the first request on its first connection.
#[derive(Clone, Copy, PartialEq)]
enum First {
    /// Serves it.
    Serve,
    /// Ends the connection gracefully, its last stream 0: the request was not processed.
    GoAway,
    /// Ends the connection with an error (`INTERNAL_ERROR`), its last stream 0: the
    /// request was not processed either, whatever the error (RFC 9113 §6.8).
    GoAwayError,
    /// Ends the connection with an error, its last stream the request's own: the request
    /// may have been processed.
    GoAwayErrorAfter,
    /// Resets the request's stream with `REFUSED_STREAM`, and serves the connection's
    /// later ones.
    Refuse,
    /// Resets the connection's first three streams with `REFUSED_STREAM`.
    RefuseThree,
    /// Every connection: one stream at a time, and a graceful close after three answers
    /// (nginx's `keepalive_requests` with `http2_max_concurrent_streams`, made small).
    CloseAfterThree,
    /// Also speaks HTTP/1.1, and there switches a WebSocket handshake, echoing its bytes.
    WebSocket,
}

/// An HTTP/2 member on TLS at 127.0.0.1 answering each request with its head and its
/// body's length, but for the first request on its first connection ([`First`]); its URL,
/// the CA's PEM file, and how many connections it took.
async fn h2_member(first: First, test: &str) -> (String, String, Arc<AtomicUsize>) {
    let alpn: &[&[u8]] = if first == First::WebSocket {
        &[b"h2", b"http/1.1"]
    } else {
        &[b"h2"]
    };
    let pki = tls_pki::pki_speaking("127.0.0.1", alpn);
    let ca = std::env::temp_dir().join(format!("h2-members-{test}-{}.pem", std::process::id()));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let acceptor = pki.acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // HTTP/1.1 by ALPN, or no protocol chosen
                let h1 = tls.get_ref().1.alpn_protocol() != Some(b"h2");
                match first {
                    First::GoAway if n == 0 => return go_away(&mut tls, 0, 0).await,
                    First::GoAwayError if n == 0 => return go_away(&mut tls, 0, 2).await,
                    First::GoAwayErrorAfter if n == 0 => return go_away(&mut tls, 1, 2).await,
                    First::Refuse if n == 0 => return h2_serve(tls, 1, false).await,
                    First::RefuseThree if n == 0 => return h2_serve(tls, 3, false).await,
                    First::CloseAfterThree => return h2_serve(tls, 0, true).await,
                    First::WebSocket if h1 => return switch_and_echo(tls).await,
                    _ => {}
                }
                let svc = hyper::service::service_fn(echo);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (
        format!("https://127.0.0.1:{}", addr.port()),
        ca.display().to_string(),
        taken,
    )
}

/// The request's head, one header a line, and its body's length; 400 for an HTTP/2
/// request with a `Host` beside its `:authority`, as nginx before 1.25 answers it.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.version() == http::Version::HTTP_2 && req.headers().contains_key(http::header::HOST) {
        let mut res = Response::new(Full::new(Bytes::from("duplicate host header\n")));
        *res.status_mut() = http::StatusCode::BAD_REQUEST;
        return Ok(res);
    }
    let mut text = format!("{} {}\n", req.method(), req.uri());
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
    text.push_str(&format!("body: {}\n", body.unwrap_or(0)));
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// Speaks HTTP/2 frame by frame: the server's `SETTINGS`, then at the first `HEADERS` a
/// `GOAWAY` with last stream `last` and error code `code` (0: `NO_ERROR`), and the
/// connection's close.
async fn go_away<S>(tls: &mut S, last: u8, code: u8)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    if tls.read_exact(&mut preface).await.is_err() {
        return;
    }
    let _ = tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
    loop {
        let mut head = [0u8; 9];
        if tls.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if tls.read_exact(&mut payload).await.is_err() {
            return;
        }
        if head[3] == 1 {
            // GOAWAY: the last stream, the error code
            let _ = tls
                .write_all(&[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, last, 0, 0, 0, code])
                .await;
            let _ = tls.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tls.shutdown().await;
            return;
        }
    }
}

/// An HTTP/2 connection (the `h2` crate's server) answering as [`echo`] does; its first
/// `refuse` streams reset with `REFUSED_STREAM`; when `close_after_three`, one
/// stream at a time and a graceful close (`GOAWAY`) once three are answered, every stream
/// it took still answered.
async fn h2_serve<S>(tls: S, refuse: usize, close_after_three: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    if close_after_three {
        builder.max_concurrent_streams(1);
    }
    let Ok(mut conn) = builder.handshake::<_, Bytes>(tls).await else {
        return;
    };
    let mut taken = 0;
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        taken += 1;
        if taken <= refuse {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        let answered = tokio::spawn(async move {
            let mut text = format!("{} {}\n", req.method(), req.uri());
            for (k, v) in req.headers() {
                text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            let mut body = req.into_body();
            let mut len = 0;
            while let Some(Ok(chunk)) = body.data().await {
                len += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            text.push_str(&format!("body: {len}\n"));
            if let Ok(mut send) = respond.send_response(Response::new(()), false) {
                let _ = send.send_data(Bytes::from(text), true);
            }
        });
        if close_after_three && taken == 3 {
            let _ = answered.await;
            conn.graceful_shutdown();
        }
    }
}

/// An HTTP/1.1 connection: a WebSocket handshake switched (`101`), then every byte echoed.
async fn switch_and_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut tls: S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = tls
        .write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .await;
    while let Ok(n) = tls.read(&mut buf).await {
        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A balancer built from a file for the member at `url`, trusting the CA in `ca`, with a
/// manager for `/metrics`.
async fn lb_trusting(url: String, ca: &str) -> harness::Lb {
    lb(
        &[url],
        "",
        &format!("trust_roots = [\"{ca}\"]"),
        "[manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await
}

/// The balancer's failure counters for its members, summed.
fn failures(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("lb_member_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn an_http2_member_gets_the_authority_and_no_host_beside_it() {
    let (url, ca, _) = h2_member(First::Serve, "authority").await;
    for (preserve, authority) in [
        ("false", url.trim_start_matches("https://")),
        ("true", "lb.test"),
    ] {
        let lb = lb(
            std::slice::from_ref(&url),
            "",
            &format!("trust_roots = [\"{ca}\"]\npreserve_host = {preserve}"),
            "",
        )
        .await;
        let out = raw(
            lb.addr,
            b"GET /x HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
            5 * SECOND,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(
            out.contains(&format!("\r\n\r\nGET https://{authority}/x\n")),
            "{out}"
        );
        assert!(!out.contains("\nhost: "), "{out}");
    }
}

/// A member ending its connection gracefully while a request crossed it (nginx after
/// `keepalive_requests`), or refusing its stream: the request was not processed, so it goes
/// out again, a `POST` too, and the member is not held to have failed. Both were 502s
/// counted toward ejection (hostile round 5: one member in seconds at 1,000 requests a
/// connection).
#[tokio::test]
async fn a_request_an_http2_member_refused_unprocessed_is_sent_again_and_not_held_against_it() {
    // a GOAWAY ends the connection: the request goes out on a new one
    for (how, test, connections, resends) in [
        (First::GoAway, "goaway", 2, 1),
        (First::GoAwayError, "goaway-error", 2, 1),
        (First::Refuse, "refused", 1, 1),
        // refused three times in a row (nginx closing often with few streams, under load)
        (First::RefuseThree, "refused3", 1, 3),
    ] {
        let (url, ca, taken) = h2_member(how, test).await;
        let lb = lb_trusting(url, &ca).await;
        let out = post_form(&lb).await;
        assert!(
            out.starts_with("HTTP/1.1 200"),
            "{test}: {out} {}",
            metrics(&lb).await
        );
        assert!(
            out.contains("POST https://") && out.contains("body: 3\n"),
            "{test}: {out}"
        );
        assert_eq!(taken.load(Ordering::SeqCst), connections, "{test}");
        let m = metrics(&lb).await;
        assert_eq!(failures(&m), 0, "{test}: {m}");
        let said =
            format!("lb_member_resends_total{{balancer=\"b\",member=\"node1\"}} {resends}\n");
        assert!(m.contains(&said), "{test}: {m}");
    }
}

/// A `POST /form` of three bytes through `lb`: its answer, as text.
async fn post_form(lb: &harness::Lb) -> String {
    raw(
        lb.addr,
        b"POST /form HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        5 * SECOND,
    )
    .await
}

/// A member's `GOAWAY` whose last stream is the request's own says the request may have
/// been processed, whatever its error code: a `POST` is not sent again, but answered 502.
#[tokio::test]
async fn a_request_at_or_below_the_last_stream_of_an_error_goaway_is_not_sent_again() {
    let (url, ca, taken) = h2_member(First::GoAwayErrorAfter, "goaway-after").await;
    let lb = lb_trusting(url, &ca).await;
    let out = post_form(&lb).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert_eq!(taken.load(Ordering::SeqCst), 1);
    let m = metrics(&lb).await;
    assert!(
        m.contains("lb_member_resends_total{balancer=\"b\",member=\"node1\"} 0\n"),
        "{m}"
    );
}

/// A client's upload that fails on its way to an HTTP/2 member (a broken chunk) is the
/// client's failure: 400, and not counted against the member. The member's connection sees
/// only the stream reset that followed, and each was counted as the member's failure, so
/// five such uploads ejected a healthy member (hostile round 5); an HTTP/1.1 member's
/// connection carries the body's own error, and was never held to it.
#[tokio::test]
async fn a_clients_failed_upload_to_an_http2_member_is_the_clients() {
    let (url, ca, _) = h2_member(First::Serve, "upload").await;
    let lb = lb_trusting(url, &ca).await;
    for i in 0..6 {
        let out = raw(
            lb.addr,
            b"POST /u HTTP/1.1\r\nHost: lb.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\nZZ\r\n",
            5 * SECOND,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400"), "upload {i}: {out}");
    }
    let m = metrics(&lb).await;
    assert_eq!(failures(&m), 0, "{m}");
    assert!(
        m.contains("lb_member_healthy{balancer=\"b\",member=\"node1\"} 1"),
        "{m}"
    );
}

/// Requests waiting for a stream of a member's connection as it closes gracefully never went
/// out: sent again, not a 400 blamed on the client (hostile round 6: 0.5% of GETs and POSTs
/// against nginx members closing after 100 requests with 4 streams).
#[tokio::test]
async fn requests_waiting_for_a_stream_of_a_closing_connection_are_sent_again() {
    let (url, ca, taken) = h2_member(First::CloseAfterThree, "closing").await;
    let lb = lb_trusting(url, &ca).await;
    // the member's connection made, so that the requests below share it
    let out = raw(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
        5 * SECOND,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let asks: Vec<_> = (0..8)
        .map(|i| {
            let addr = lb.addr;
            tokio::spawn(async move {
                let req = format!(
                    "POST /p{i} HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
                );
                raw(addr, req.as_bytes(), 10 * SECOND).await
            })
        })
        .collect();
    for (i, ask) in asks.into_iter().enumerate() {
        let out = ask.await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "request {i}: {out}");
        assert!(out.contains("body: 3\n"), "request {i}: {out}");
    }
    assert!(
        taken.load(Ordering::SeqCst) > 1,
        "the member closed no connection"
    );
    let m = metrics(&lb).await;
    assert_eq!(failures(&m), 0, "{m}");
}

/// A WebSocket handshake to a member that also speaks HTTP/2 goes over HTTP/1.1, where
/// `Upgrade` means something: over HTTP/2 it became a plain `GET`, and the client got the
/// member's `200` (hostile round 6).
#[tokio::test]
async fn a_websocket_to_a_member_that_speaks_http2_is_switched_over_http1() {
    let (url, ca, _) = h2_member(First::WebSocket, "websocket").await;
    let lb = lb_trusting(url, &ca).await;
    // a plain request still goes over HTTP/2
    let out = raw(
        lb.addr,
        b"GET /x HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n",
        5 * SECOND,
    )
    .await;
    assert!(out.contains("\r\n\r\nGET https://"), "{out}");
    let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: lb.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (head, body) = harness::read_response(&mut s, &mut buf).await;
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "{head}{}",
        String::from_utf8_lossy(&body)
    );
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(5 * SECOND, s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
}

/// Health probes reach an HTTP/2 member as requests do, with no `Host` beside the
/// `:authority`: with both, nginx before 1.25 answered 400, and every member that speaks
/// HTTP/2 was down for good (hostile round 12).
#[tokio::test]
async fn an_http2_member_passes_its_health_probes() {
    let (url, ca, _) = h2_member(First::Serve, "probes").await;
    let lb = lb(
        &[url],
        "",
        &format!("trust_roots = [\"{ca}\"]"),
        "[balancer.health]\nuri = \"/health\"\ninterval = \"1s\"\n\
         [manager]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    // members start down until their first probe passes
    let mut healthy = false;
    for _ in 0..50 {
        healthy = metrics(&lb)
            .await
            .lines()
            .any(|l| l.starts_with("lb_member_healthy{") && l.ends_with(" 1"));
        if healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "{}", metrics(&lb).await);
}
