//! A plain HTTP request sent to the TLS port gets an answer that says so.
//!
//! Why: a client that writes `http://` for the balancer's `https://` port (a browser's
//! typed address, a health checker set up wrong) used to see the connection close without a
//! word, and its operator a failed handshake and nothing more. nginx answers such a request
//! with 400 "The plain HTTP request was sent to HTTPS port"; this does the same. The first
//! byte tells them apart without taking it from the TLS library: every TLS connection starts
//! with a handshake record (type 22), every HTTP/1 request with a method's capital letter.
//! One `peek` a TLS connection, none a request.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a request head may take before the answer is sent anyway: hyper's default limit.
const HEAD_LIMIT: usize = 16 * 1024;
/// What is read (and dropped) after the answer so closing does not reset the connection
/// before the client read it.
const DRAIN_LIMIT: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

const ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 71\r\n\
connection: close\r\n\
\r\n\
This port speaks HTTPS: the request was sent as plain HTTP. Use https.\n";

/// Whether the client's first byte starts an HTTP/1 request rather than a TLS handshake
/// (waits for it; a client that closes first is not one).
pub(super) async fn is_plain_http(sock: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(sock.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// Reads the request head (up to [`HEAD_LIMIT`]), answers 400 and closes, draining what
/// else the client sends for a moment so the answer is not lost to a reset.
pub(super) async fn refuse(mut sock: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while head.len() < HEAD_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if sock.write_all(ANSWER).await.is_err() || sock.shutdown().await.is_err() {
        return;
    }
    let mut drained = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while drained < DRAIN_LIMIT {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answers_length_is_its_body() {
        let text = std::str::from_utf8(ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
