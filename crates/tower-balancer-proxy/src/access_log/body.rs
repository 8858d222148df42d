//! The logged answer's body: its end (or its drop, when it fails or its client goes away)
//! writes the request's line, with the bytes the client got.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::line::write;
use super::{Done, Entry};

pin_project! {
    /// A response body whose end writes the request's line.
    #[derive(Debug)]
    pub struct LoggedBody<B> {
        #[pin]
        pub(super) inner: B,
        // boxed as the future's entry is: ~250 bytes less to copy each time the answer moves
        pub(super) pending: Option<(Arc<Entry>, Done)>,
        pub(super) bytes: u64,
    }

    impl<B> PinnedDrop for LoggedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // the body failed, or the client went away before the end: log what was sent
            let this = this.project();
            if let Some((entry, mut done)) = this.pending.take() {
                // the stop's graceful timeout cut it: as when the member cuts it, the line
                // says so, or a deploy that truncates downloads reads as clean 200s
                done.cut |= crate::serve::dropped_at_stop();
                write(&entry, &done, *this.bytes);
            }
        }
    }
}

impl<B: Body> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    *this.bytes += bytes::Buf::remaining(d) as u64;
                }
            }
            None => {
                if let Some((entry, done)) = this.pending.take() {
                    write(&entry, &done, *this.bytes);
                }
            }
            // written when the body is dropped, just after: the server may answer its own
            // page instead (`Replaced`) once it sees the failure
            Some(Err(_)) => {
                if let Some((_, done)) = this.pending.as_mut() {
                    done.cut = true;
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
