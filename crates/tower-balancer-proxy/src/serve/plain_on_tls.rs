//! A plain HTTP request sent to the TLS port gets an answer that says so.
//!
//! Why: a client that writes `http://` for the balancer's `https://` port (a browser's
//! typed address, a health checker set up wrong) used to see the connection close without a
//! word, and its operator a failed handshake and nothing more. nginx answers such a request
//! with 400 "The plain HTTP request was sent to HTTPS port"; this does the same. The first
//! byte tells them apart without taking it from the TLS library: every TLS connection starts
//! with a record whose type is 20 to 24, every HTTP/1 request with a method's letter (or the
//! empty line a client may send before it). One `peek` a TLS connection, none a request.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Whether the client's first byte starts plain text (an HTTP/1 request, typed by hand or
/// not) rather than a TLS record (waits for it; a client that closes first is not one).
pub(super) async fn is_plain_http(sock: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(sock.peek(&mut first).await, Ok(1) if starts_plain_text(first[0]))
}

/// A method's letter, in either case (`printf 'get /'` is a human's request too), or the
/// empty line RFC 9112 §2.2 lets a client send first; no TLS record type is either.
const fn starts_plain_text(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'\r' || b == b'\n'
}

/// Whether `head` holds a request head's end, with CRLF or bare LF line ends.
fn head_ended(head: &[u8]) -> bool {
    head.windows(2).any(|w| w == b"\n\n") || head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Reads the request head, for at most `limit` bytes and `time`, then answers 400 and
/// closes (a head that never ends gets the answer too: the client needs it more than
/// anyone), draining what else the client sends for a moment so the answer is not lost to
/// a reset.
pub(super) async fn refuse(mut sock: TcpStream, limit: usize, time: Duration) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let read_head = async {
        while head.len() < limit && !head_ended(&head) {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if let Ok(false) = tokio::time::timeout(time, read_head).await {
        // the client closed: no one to tell
        return;
    }
    let answer = async {
        sock.write_all(ANSWER).await?;
        sock.shutdown().await
    };
    if !matches!(tokio::time::timeout(time, answer).await, Ok(Ok(()))) {
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
    fn text_and_tls_records_are_told_apart_by_their_first_byte() {
        for b in [b'G', b'g', b'P', b'\r', b'\n'] {
            assert!(starts_plain_text(b), "{b}");
        }
        // change_cipher_spec, alert, handshake, application_data, heartbeat; SSLv2's hello
        for b in [20, 21, 22, 23, 24, 0x80] {
            assert!(!starts_plain_text(b), "{b}");
        }
    }

    #[test]
    fn a_head_ends_with_crlf_or_bare_lf_lines() {
        assert!(head_ended(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(head_ended(b"GET / HTTP/1.0\n\n"));
        assert!(!head_ended(b"GET / HTTP/1.1\r\nHost: a\r\n"));
    }

    #[test]
    fn the_answers_length_is_its_body() {
        let text = std::str::from_utf8(ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
