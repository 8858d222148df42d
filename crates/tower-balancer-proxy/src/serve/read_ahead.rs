//! Answers hyper's server writes (requests with a body, HTTP/2): what the body has ready is
//! read before the answer is handed over, so a body that fails at once becomes a 502.
//!
//! Why: hyper's server holds an answer's head until it has the body's first bytes, or the
//! body has nothing ready, and when the body fails before then it closes the connection
//! without writing anything. A member that sent its head and closed left a `POST`'s client
//! with no answer at all, 11 of 30 times in a hostile test. Here what is ready now is taken
//! first (up to [`AHEAD`] bytes); if the body fails in it, the client gets the 502 the
//! balancer gives for any failed member. The server's own HTTP/1.1 path does the same as it
//! writes (`front::write`). A body that fails later, after bytes of it went out, still cuts
//! the answer short: it cannot be taken back.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::CONNECTION;
use http::{HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};

use super::status::body_failed_page;

/// Body bytes read ahead at most (a larger ready body is handed over as it is).
const AHEAD: usize = 16 * 1024;

/// An answer whose body was read ahead, or the 502 that replaced it.
pub(crate) type AheadAnswer<B> = Response<Either<Ahead<B>, Full<Bytes>>>;

/// A body whose ready frames were read before its answer was handed over.
pub(crate) struct Ahead<B> {
    frames: VecDeque<Frame<Bytes>>,
    /// The body ended while it was read ahead.
    ended: bool,
    /// The body's size as it said before any of it was read, until a frame is given out.
    hint: Option<SizeHint>,
    inner: Pin<Box<B>>,
}

/// Reads ahead what `res`'s body has ready; a body that fails in it is replaced by a 502
/// with the answer's request id, closing the connection after it (`http1`: the request came
/// over HTTP/1, where `Connection` says so). `head`: the request was `HEAD`, whose answer
/// has no body to read.
pub(crate) async fn read_ahead<B>(res: Response<B>, http1: bool, head: bool) -> AheadAnswer<B>
where
    B: Body<Data = Bytes>,
{
    let (parts, body) = res.into_parts();
    let mut body = Ahead {
        frames: VecDeque::new(),
        ended: false,
        hint: Some(body.size_hint()),
        inner: Box::pin(body),
    };
    let mut bytes = 0;
    while !head && bytes < AHEAD && !body.inner.is_end_stream() {
        let inner = &mut body.inner;
        match std::future::poll_fn(|cx| Poll::Ready(inner.as_mut().poll_frame(cx))).await {
            Poll::Pending => break,
            Poll::Ready(None) => {
                body.ended = true;
                break;
            }
            Poll::Ready(Some(Ok(frame))) => {
                bytes += frame.data_ref().map_or(0, Buf::remaining);
                body.frames.push_back(frame);
            }
            Poll::Ready(Some(Err(_))) => {
                // the failure is logged where the member is known (the balance layer's body)
                let mut page = body_failed_page::<Ahead<B>>(&parts);
                if http1 {
                    page.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                return page;
            }
        }
    }
    Response::from_parts(parts, Either::Left(body))
}

impl<B: Body<Data = Bytes>> Body for Ahead<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.hint = None;
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.hint {
            // what hyper asks before the head: the whole body's size, as the body said it
            Some(hint) => *hint,
            None => {
                let ready = self
                    .frames
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|d| d.remaining() as u64)
                    .sum::<u64>();
                if self.ended {
                    return SizeHint::with_exact(ready);
                }
                let inner = self.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(ready));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(ready));
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{Response, StatusCode};
    use http_body::{Body, Frame, SizeHint};
    use http_body_util::BodyExt;
    use tower_balancer::BoxError;

    use super::read_ahead;

    /// Gives its frames in order; `None` in the list is one `Pending` (the task woken).
    struct Frames(VecDeque<Option<Result<&'static [u8], &'static str>>>, u64);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.0.pop_front() {
                None => Poll::Ready(None),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b))))),
                Some(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            }
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.1)
        }
    }

    fn answer(frames: Vec<Option<Result<&'static [u8], &'static str>>>) -> Response<Frames> {
        let mut res = Response::new(Frames(frames.into(), 9));
        res.headers_mut()
            .insert("x-request-id", http::HeaderValue::from_static("id-1"));
        res
    }

    #[tokio::test]
    async fn a_body_failing_in_what_was_ready_becomes_a_502_that_closes_http1() {
        let res = read_ahead(
            answer(vec![Some(Ok(b"abc")), Some(Err("cut"))]),
            true,
            false,
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(res.headers()["x-request-id"], "id-1");
        assert_eq!(res.headers()["connection"], "close");
        let page = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(page, "502 Bad Gateway\n");
        let res = read_ahead(answer(vec![Some(Err("cut"))]), false, false).await;
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        assert!(res.headers().get("connection").is_none(), "HTTP/2 has none");
    }

    #[tokio::test]
    async fn what_was_read_ahead_is_given_first_then_the_rest_with_the_size_it_said() {
        let frames = vec![
            Some(Ok(&b"abc"[..])),
            Some(Ok(b"def")),
            None,
            Some(Ok(b"ghi")),
        ];
        let res = read_ahead(answer(frames), true, false).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.body().size_hint().exact(), Some(9));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "abcdefghi");
    }

    #[tokio::test]
    async fn a_failure_after_the_ready_part_is_left_to_cut_the_answer() {
        let res = read_ahead(
            answer(vec![Some(Ok(b"abc")), None, Some(Err("cut"))]),
            true,
            false,
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.into_body().collect().await.is_err());
    }

    #[tokio::test]
    async fn a_head_answer_is_not_read() {
        let res = read_ahead(answer(vec![Some(Err("cut"))]), true, true).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}
