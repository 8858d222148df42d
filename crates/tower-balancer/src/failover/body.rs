//! A request body that can be sent again: the client's body, buffered lazily up to a cap.
//!
//! Why lazily: most requests succeed on the first attempt, so the body streams to the member
//! as it arrives while a copy is kept, up to the cap (64 KiB by default). When an attempt
//! fails, the next attempt replays the copy byte for byte and then continues with whatever
//! the client has not sent yet. A body over the cap is forwarded normally but can no longer
//! be replayed once any of it was read; that is reported, not hidden.
//!
//! Only one attempt reads at a time: each attempt's body carries a generation, and a body
//! from an earlier attempt (a connection still flushing it) gets an error instead of data.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::balance::UploadProgress;
use crate::BoxError;

/// Why a [`ReplayBody`] gave no more data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The client's body failed.
    #[error("client request body failed")]
    Client(#[source] BoxError),
    /// A later attempt took over the body.
    #[error("request body was taken over by a later attempt")]
    Superseded,
    /// The body outgrew the replay cap after part of it was read.
    #[error("request body is larger than the replay cap and cannot be sent again")]
    OverCap,
}

struct ReplayState<B> {
    body: Option<B>,
    hint: SizeHint,
    chunks: Vec<Bytes>,
    buffered: usize,
    read: u64,
    cap: usize,
    capped: bool,
    client_failed: bool,
    ended: bool,
    trailers: Option<HeaderMap>,
    generation: u64,
    /// How the client's upload goes, for the attempts' time limits.
    upload: Option<UploadProgress>,
}

impl<B> ReplayState<B> {
    /// The client's body failed: no attempt can send it whole, and the attempt under way
    /// is told it is the client's failure ([`UploadProgress::failed`]).
    fn client_body_failed(&mut self) {
        self.client_failed = true;
        self.body = None;
        if let Some(u) = &self.upload {
            u.failed();
        }
    }
}

/// The request body each attempt sends.
pub struct ReplayBody<B> {
    shared: Arc<Mutex<ReplayState<B>>>,
    generation: u64,
    /// Buffered chunks this attempt has sent.
    pos: usize,
    /// Bytes this attempt has sent.
    sent: u64,
    trailers_sent: bool,
}

impl<B> std::fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBody")
            .field("generation", &self.generation)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

/// The handle the failover future keeps to start new attempts.
pub(crate) struct Replay<B> {
    shared: Arc<Mutex<ReplayState<B>>>,
}

fn lock<B>(m: &Mutex<ReplayState<B>>) -> MutexGuard<'_, ReplayState<B>> {
    // no code path panics while holding this lock; a poisoned one is still consistent
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B: Body> Replay<B> {
    pub(crate) fn new(body: B, cap: usize) -> Self {
        let hint = body.size_hint();
        let ended = body.is_end_stream();
        Self {
            shared: Arc::new(Mutex::new(ReplayState {
                body: if ended { None } else { Some(body) },
                hint,
                chunks: Vec::new(),
                buffered: 0,
                read: 0,
                cap,
                // a body announced larger than the cap is never buffered at all
                capped: hint.lower() > cap as u64,
                client_failed: false,
                ended,
                trailers: None,
                generation: 0,
                upload: None,
            })),
        }
    }
}

impl<B> Replay<B> {
    /// The body for the next attempt; earlier attempts' bodies stop yielding data.
    pub(crate) fn attempt(&self) -> ReplayBody<B> {
        let mut s = lock(&self.shared);
        s.generation += 1;
        ReplayBody {
            shared: self.shared.clone(),
            generation: s.generation,
            pos: 0,
            sent: 0,
            trailers_sent: false,
        }
    }

    /// The upload's progress, if the client's body has not ended yet: put in each
    /// attempt's request, it keeps the attempt's time limit off the client's upload time.
    pub(crate) fn upload(&self) -> Option<UploadProgress> {
        let mut s = lock(&self.shared);
        if s.ended {
            return None;
        }
        Some(s.upload.get_or_insert_with(UploadProgress::new).clone())
    }

    /// Whether a new attempt could send the whole body again.
    pub(crate) fn can_replay(&self) -> bool {
        let s = lock(&self.shared);
        !s.client_failed && (!s.capped || s.read == 0)
    }

    /// Whether the client's own body failed.
    pub(crate) fn client_failed(&self) -> bool {
        lock(&self.shared).client_failed
    }

    /// Whether the body could not be replayed because it outgrew the cap after being read.
    #[cfg(test)]
    pub(crate) fn over_cap(&self) -> bool {
        let s = lock(&self.shared);
        s.capped && s.read > 0
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = ReplayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        let this = self.get_mut();
        let mut s = lock(&this.shared);
        if s.generation != this.generation {
            return Poll::Ready(Some(Err(ReplayError::Superseded)));
        }
        // 1. what earlier attempts already read
        if this.pos < s.chunks.len() {
            let chunk = s.chunks[this.pos].clone();
            this.pos += 1;
            this.sent += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if this.sent < s.read {
            // earlier attempts read bytes that were not kept
            return Poll::Ready(Some(Err(ReplayError::OverCap)));
        }
        // 2. the rest of the client's body
        if let Some(body) = s.body.as_mut() {
            let polled = Pin::new(body).poll_frame(cx);
            if let Some(u) = &s.upload {
                match &polled {
                    Poll::Pending => u.waiting(),
                    Poll::Ready(Some(_)) => u.read(),
                    Poll::Ready(None) => u.ended(),
                }
            }
            match std::task::ready!(polled) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        s.read += bytes.len() as u64;
                        if !s.capped {
                            if s.buffered + bytes.len() > s.cap {
                                s.capped = true;
                                s.chunks = Vec::new();
                                s.buffered = 0;
                            } else {
                                s.buffered += bytes.len();
                                s.chunks.push(bytes.clone());
                            }
                        }
                        this.pos = s.chunks.len();
                        this.sent += bytes.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            s.trailers = Some(trailers.clone());
                            this.trailers_sent = true;
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        // an unknown frame kind: skip it
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                },
                Some(Err(e)) => {
                    s.client_body_failed();
                    return Poll::Ready(Some(Err(ReplayError::Client(e.into()))));
                }
                None => {
                    s.ended = true;
                    s.body = None;
                }
            }
        }
        // 3. the end, with the trailers if the client sent any
        if !this.trailers_sent {
            if let Some(t) = s.trailers.clone() {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        let s = lock(&self.shared);
        s.generation == self.generation
            && s.ended
            && self.pos >= s.chunks.len()
            && self.sent >= s.read
            && (self.trailers_sent || s.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let s = lock(&self.shared);
        let mut hint = SizeHint::new();
        hint.set_lower(s.hint.lower().saturating_sub(self.sent));
        if let Some(upper) = s.hint.upper() {
            hint.set_upper(upper.saturating_sub(self.sent));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> StreamBody<futures_stream::Iter> {
        StreamBody::new(futures_stream::Iter::new(
            parts
                .iter()
                .map(|p| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(p))))
                .collect(),
        ))
    }

    /// A minimal stream over a list of frames, so the tests need no extra crate.
    mod futures_stream {
        use std::collections::VecDeque;
        use std::pin::Pin;
        use std::task::{Context, Poll};

        use bytes::Bytes;
        use http_body::Frame;

        pub(super) struct Iter(VecDeque<Result<Frame<Bytes>, std::io::Error>>);
        impl Iter {
            pub(super) fn new(v: Vec<Result<Frame<Bytes>, std::io::Error>>) -> Self {
                Self(v.into())
            }
        }
        impl futures_core::Stream for Iter {
            type Item = Result<Frame<Bytes>, std::io::Error>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                Poll::Ready(self.0.pop_front())
            }
        }
    }

    #[tokio::test]
    async fn a_second_attempt_replays_the_whole_body_byte_for_byte() {
        let replay = Replay::new(chunked(&[b"hello ", b"wor", b"ld"]), 64);
        let first = replay.attempt();
        let got = first.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"hello world");
        assert!(replay.can_replay());
        let second = replay.attempt();
        assert_eq!(
            &second.collect().await.unwrap().to_bytes()[..],
            b"hello world"
        );
    }

    #[tokio::test]
    async fn a_replay_continues_with_what_the_client_has_not_sent_yet() {
        let replay = Replay::new(chunked(&[b"ab", b"cd", b"ef"]), 64);
        let mut first = replay.attempt();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        // the first attempt fails here; the second gets everything
        let second = replay.attempt();
        assert_eq!(&second.collect().await.unwrap().to_bytes()[..], b"abcdef");
        // and the first one is cut off
        assert!(matches!(
            first.frame().await,
            Some(Err(ReplayError::Superseded))
        ));
    }

    #[tokio::test]
    async fn a_body_over_the_cap_cannot_be_replayed_once_read() {
        let replay = Replay::new(chunked(&[b"0123456789", b"0123456789"]), 15);
        assert!(
            replay.can_replay(),
            "nothing read yet: a connect failure may still retry"
        );
        let first = replay.attempt();
        let _ = first.collect().await.unwrap();
        assert!(!replay.can_replay());
        assert!(replay.over_cap());
        let mut second = replay.attempt();
        assert!(matches!(
            second.frame().await,
            Some(Err(ReplayError::OverCap))
        ));
    }

    #[tokio::test]
    async fn a_body_exactly_at_the_cap_is_replayed() {
        let replay = Replay::new(Full::new(Bytes::from(vec![7u8; 64])), 64);
        let _ = replay.attempt().collect().await.unwrap();
        assert!(replay.can_replay());
        assert_eq!(
            replay.attempt().collect().await.unwrap().to_bytes().len(),
            64
        );
    }

    #[tokio::test]
    async fn a_failed_client_body_is_not_replayed() {
        let body = StreamBody::new(futures_stream::Iter::new(vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Err(std::io::Error::other("client went away")),
        ]));
        let replay = Replay::new(body, 64);
        let res = replay.attempt().collect().await;
        assert!(matches!(res, Err(ReplayError::Client(_))));
        assert!(!replay.can_replay());
    }

    #[test]
    fn size_hint_is_the_whole_body_for_every_attempt() {
        let replay = Replay::new(Full::new(Bytes::from_static(b"12345")), 64);
        assert_eq!(replay.attempt().size_hint().exact(), Some(5));
        assert_eq!(replay.attempt().size_hint().exact(), Some(5));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn body_of(chunks: &[Vec<u8>]) -> StreamBody<futures_stream::Iter> {
            StreamBody::new(futures_stream::Iter::new(
                chunks
                    .iter()
                    .map(|c| Ok(Frame::data(Bytes::from(c.clone()))))
                    .collect(),
            ))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever the chunking and however much the first attempt read, a second attempt
            /// sends the identical body when what was read fit in the cap, and refuses
            /// (never sends a corrupted body) when it did not.
            #[test]
            fn replayed_bodies_are_byte_identical_or_refused(
                chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
                cap in 0usize..2048,
                first_reads in 0usize..14,
            ) {
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                rt.block_on(async {
                    let full: Vec<u8> = chunks.concat();
                    let replay = Replay::new(body_of(&chunks), cap);
                    let mut first = replay.attempt();
                    let mut read = 0usize;
                    for _ in 0..first_reads {
                        match first.frame().await {
                            Some(Ok(f)) => read += f.into_data().map(|d| d.len()).unwrap_or(0),
                            _ => break,
                        }
                    }
                    let second = replay.attempt().collect().await;
                    if read <= cap {
                        let got = second.map(|c| c.to_bytes().to_vec());
                        prop_assert_eq!(got.ok(), Some(full));
                    } else {
                        prop_assert!(!replay.can_replay());
                        prop_assert!(matches!(second, Err(ReplayError::OverCap)));
                    }
                    Ok(())
                })?;
            }
        }
    }
}
