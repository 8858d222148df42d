//! Unit tests of the answer writer: number formatting, and what the client gets when the
//! member's answer body fails, before and after any of the answer went out.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use tower_balancer::BoxError;

use super::{digits, respond};

#[test]
fn lengths_in_decimal_and_chunk_sizes_in_upper_case_hex() {
    for n in [0u64, 9, 10, 255, 4096, 65_535, u64::MAX] {
        assert_eq!(digits(n, 10, &mut [0; 20]), n.to_string().as_bytes());
        assert_eq!(digits(n, 16, &mut [0; 20]), format!("{n:X}").as_bytes());
    }
}

/// A body that gives `frames` in order, each after one `Pending` when `pending_first`.
struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
    pending_first: bool,
    pending: bool,
}

impl Frames {
    fn new(pending_first: bool, frames: Vec<Result<&'static [u8], &'static str>>) -> Self {
        Self {
            frames: frames
                .into_iter()
                .map(|f| {
                    f.map(|b| Frame::data(Bytes::from_static(b)))
                        .map_err(Into::into)
                })
                .collect(),
            pending_first,
            pending: pending_first,
        }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.pending {
            self.pending = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending = self.pending_first;
        Poll::Ready(self.frames.pop_front())
    }
}

/// What the client is sent for an answer of `length` (or chunked) with `body`, and what
/// `respond` said.
async fn answer(length: Option<u64>, body: Frames) -> (String, std::io::Result<bool>) {
    let mut res = Response::builder()
        .status(StatusCode::OK)
        .header("x-request-id", "abc");
    if let Some(n) = length {
        res = res.header("content-length", n);
    }
    let (parts, ()) = res.body(()).unwrap().into_parts();
    let mut sent = Vec::new();
    let out = respond(&mut sent, &mut Vec::new(), &parts, pin!(body), false, true).await;
    (String::from_utf8(sent).unwrap(), out)
}

fn assert_bad_gateway(sent: &str) {
    let (head, page) = sent.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{sent}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{sent}");
    assert!(head.contains("\r\nx-request-id: abc\r\n"), "{sent}");
    assert!(head.contains("\r\ncontent-length: 16\r\n"), "{sent}");
    assert!(head.contains("\r\ndate: "), "{sent}");
    assert_eq!(page, "502 Bad Gateway\n");
}

#[tokio::test]
async fn a_body_failing_before_anything_went_out_is_answered_502_not_an_empty_reply() {
    let (sent, out) = answer(
        Some(100),
        Frames::new(false, vec![Ok(b"only ten b"), Err("cut short")]),
    )
    .await;
    assert_bad_gateway(&sent);
    assert!(!out.unwrap(), "the connection closes after it");
}

#[tokio::test]
async fn a_chunked_body_failing_before_anything_went_out_is_answered_502() {
    let (sent, out) = answer(
        None,
        Frames::new(false, vec![Ok(b"part"), Err("bad chunk")]),
    )
    .await;
    assert_bad_gateway(&sent);
    assert!(!out.unwrap());
}

#[tokio::test]
async fn a_body_ending_short_before_anything_went_out_is_answered_502() {
    let (sent, out) = answer(Some(100), Frames::new(false, vec![Ok(b"only ten b")])).await;
    assert_bad_gateway(&sent);
    assert!(!out.unwrap());
}

#[tokio::test]
async fn a_body_failing_after_the_head_went_out_cuts_the_answer_short() {
    // the body waits first, so the head is written before the failure: it cannot be taken
    // back, and the client sees the connection end before the length it was told
    let (sent, out) = answer(
        Some(100),
        Frames::new(true, vec![Ok(b"only ten b"), Err("cut short")]),
    )
    .await;
    assert!(sent.starts_with("HTTP/1.1 200 OK\r\n"), "{sent}");
    assert!(sent.contains("\r\ncontent-length: 100\r\n"), "{sent}");
    assert!(out.is_err(), "the connection is closed");
}

#[tokio::test]
async fn a_whole_body_is_sent_as_it_was() {
    let (sent, out) = answer(Some(10), Frames::new(false, vec![Ok(b"only ten b")])).await;
    assert!(sent.starts_with("HTTP/1.1 200 OK\r\n"), "{sent}");
    assert!(sent.ends_with("\r\n\r\nonly ten b"), "{sent}");
    assert!(out.unwrap(), "the connection stays open");
}
