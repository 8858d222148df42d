//! HTTP/2 answers that wait on the client's flow-control window, and since when.
//!
//! Why: hyper sends an answer's data over HTTP/2 only while the client's window has room,
//! and while it has none hyper writes nothing and stops asking the body for more. A client
//! that set its window to 0 and never opened it made no write stall, so `server.send_timeout`
//! never saw it, and it held every stream's member exchange for as long as it liked: 200 on
//! one connection in a hostile test, for minutes. So each HTTP/2 answer is watched here: it
//! waits on the client from the moment it is handed to hyper until hyper asks for its body,
//! and from each piece of data until hyper asks for the next; the bytes hyper takes from
//! its data for the wire are counted, so an answer whose data is going out, however slowly,
//! is not waiting. The connection's watcher (`timeout.rs`) closes a connection one of whose
//! answers has waited the send timeout with none of its bytes sent, as nginx ends a stream
//! whose client gives it no window. One stream a client reads cannot keep the others open:
//! each answer counts its own bytes.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::timeout::Progress;

/// The bytes of one answer taken for the wire.
type Sent = Arc<AtomicU64>;

/// What an answer waiting on the client's window must send within the send timeout to
/// wait on (a whole piece of its data, handed to hyper, also ends the wait): a client
/// granting a byte of window at a time, just inside the timeout, held a member exchange
/// for as long as it liked (a hostile test held 50 for 50 s at 650 bytes every 4.5 s).
/// 16 KiB is hyper's frame size; over a 60 s timeout it asks ~270 B/s of a client.
const PROGRESS: u64 = 16 * 1024;

#[derive(Debug)]
struct Entry {
    key: u64,
    /// Since when it waits with none of its bytes sent.
    since: Instant,
    /// Its bytes sent when `since` was set.
    seen: u64,
    sent: Sent,
}

/// The answers of one connection that wait on the client, and since when.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    /// How many wait: the common case, none, is read without the lock.
    count: AtomicUsize,
    entries: Mutex<Vec<Entry>>,
    /// The next answer's key.
    next: AtomicU64,
}

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer counting its bytes in `sent` starts waiting now: its key.
    fn start(&self, sent: &Sent) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            key,
            since: Instant::now(),
            seen: sent.load(Ordering::Relaxed),
            sent: sent.clone(),
        };
        self.lock().push(entry);
        self.count.fetch_add(1, Ordering::Relaxed);
        key
    }

    /// The answer `key` waits no more.
    fn stop(&self, key: u64) {
        let mut entries = self.lock();
        if let Some(at) = entries.iter().position(|e| e.key == key) {
            entries.swap_remove(at);
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Since when the answer that has waited longest waits, if any does, as of the last
    /// [`refresh`](Self::refresh).
    pub(crate) fn oldest(&self) -> Option<Instant> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.lock().iter().map(|e| e.since).min()
    }

    /// Answers [`PROGRESS`] of whose bytes were sent since they began to wait (or last made
    /// that much progress) wait from `now`; then [`oldest`](Self::oldest).
    pub(crate) fn refresh(&self, now: Instant) -> Option<Instant> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut entries = self.lock();
        for e in entries.iter_mut() {
            let sent = e.sent.load(Ordering::Relaxed);
            if sent - e.seen >= PROGRESS {
                e.seen = sent;
                e.since = now;
            }
        }
        entries.iter().map(|e| e.since).min()
    }
}

/// One HTTP/2 answer's place among the waiting answers.
#[derive(Debug)]
struct Watch {
    progress: Arc<Progress>,
    sent: Sent,
    /// Its key while it waits.
    key: Option<u64>,
}

impl Watch {
    fn start(&mut self) {
        if self.key.is_none() {
            self.key = Some(self.progress.waiting().start(&self.sent));
        }
    }

    fn stop(&mut self) {
        if let Some(key) = self.key.take() {
            self.progress.waiting().stop(key);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

pin_project! {
    /// An answer's body as hyper gets it: over HTTP/2, watched while it waits on the client.
    pub(crate) struct Windowed<B> {
        #[pin]
        body: B,
        watch: Option<Watch>,
    }
}

impl<B: Body> Windowed<B> {
    /// `body`, handed to hyper now; `h2`: the connection's progress, when the answer goes out
    /// over HTTP/2 (it waits until hyper first asks for it).
    pub(crate) fn new(body: B, h2: Option<Arc<Progress>>) -> Self {
        let watch = h2.map(|progress| {
            let mut watch = Watch {
                progress,
                sent: Sent::default(),
                key: None,
            };
            if !body.is_end_stream() {
                watch.start();
            }
            watch
        });
        Self { body, watch }
    }
}

impl<B: Body<Data = Bytes>> Body for Windowed<B> {
    type Data = SentBuf;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<SentBuf>, B::Error>>> {
        let this = self.project();
        let Some(watch) = this.watch else {
            let frame = ready!(this.body.poll_frame(cx));
            return Poll::Ready(frame.map(|f| f.map(|f| f.map_data(SentBuf::plain))));
        };
        // asked for: the answer waits on its member now, not on the client
        watch.stop();
        let frame = ready!(this.body.poll_frame(cx));
        Poll::Ready(frame.map(|f| {
            f.map(|f| {
                if let Some(d) = f.data_ref() {
                    // hyper asks for the next piece, or drops the body after the last, once
                    // the client's window has room for this one
                    watch.start();
                    // an answer's data is what earns the client's window updates their
                    // keep (`flood.rs`); the server's own frames (PING acknowledgements,
                    // SETTINGS) earn nothing, or a PING flood would pay for itself
                    watch.progress.overhead().sent(d.len());
                }
                f.map_data(|d| SentBuf {
                    inner: d,
                    sent: Some(watch.sent.clone()),
                })
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A piece of an answer's data that counts its bytes as they are taken for the wire.
#[derive(Debug)]
pub(crate) struct SentBuf {
    inner: Bytes,
    sent: Option<Sent>,
}

impl SentBuf {
    const fn plain(inner: Bytes) -> Self {
        Self { inner, sent: None }
    }

    fn count(&self, n: usize) {
        if let Some(sent) = &self.sent {
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl Buf for SentBuf {
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.inner.chunk()
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        self.inner.chunks_vectored(dst)
    }

    fn advance(&mut self, cnt: usize) {
        self.count(cnt);
        self.inner.advance(cnt);
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        self.count(len);
        self.inner.copy_to_bytes(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::collections::VecDeque;
    use std::time::Duration;

    /// Pieces of data, then the end; its end is known only when asked for.
    struct Pieces(VecDeque<&'static str>);

    impl Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|s| Ok(Frame::data(Bytes::from(s)))))
        }
    }

    fn answer(progress: &Arc<Progress>, h2: bool, pieces: &[&'static str]) -> Windowed<Pieces> {
        let body = Pieces(pieces.iter().copied().collect());
        Windowed::new(body, h2.then(|| progress.clone()))
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn an_answer_waits_until_asked_for_and_after_each_piece_of_data() {
        let progress = Arc::new(Progress::default());
        let big: &'static str = Box::leak("x".repeat(20_000).into_boxed_str());
        let mut body = answer(&progress, true, &[big, "c"]);
        let handed = Instant::now();
        assert_eq!(
            progress.waiting().oldest(),
            Some(handed),
            "not asked for yet"
        );
        tokio::time::advance(5 * SECOND).await;
        let mut first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        // it gave data: waiting on the client again, from now
        assert_eq!(progress.waiting().oldest(), Some(handed + 5 * SECOND));
        // a byte of it goes out: too little to wait on (a client granting a byte at a time)
        tokio::time::advance(SECOND).await;
        first.advance(1);
        let taken = handed + 5 * SECOND;
        assert_eq!(progress.waiting().refresh(Instant::now()), Some(taken));
        // 16 KiB more: at the next look it waits from then
        tokio::time::advance(SECOND).await;
        first.advance(PROGRESS as usize);
        assert_eq!(progress.waiting().oldest(), Some(taken));
        let now = Instant::now();
        assert_eq!(progress.waiting().refresh(now), Some(now));
        // nothing more went out: the next look keeps the time
        tokio::time::advance(SECOND).await;
        assert_eq!(progress.waiting().refresh(Instant::now()), Some(now));
        drop(first);
        body.frame().await.unwrap().unwrap();
        assert!(
            progress.waiting().oldest().is_some(),
            "the last piece waits too"
        );
        assert!(body.frame().await.is_none());
        assert_eq!(progress.waiting().oldest(), None, "asked for again");
        drop(body);
        assert_eq!(progress.waiting().oldest(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn each_answer_counts_its_own_bytes() {
        let progress = Arc::new(Progress::default());
        let big: &'static str = Box::leak("x".repeat(20_000).into_boxed_str());
        let mut read = answer(&progress, true, &[big, "c"]);
        let mut stuck = answer(&progress, true, &["de", "f"]);
        let mut a = read.frame().await.unwrap().unwrap().into_data().unwrap();
        let _d = stuck.frame().await.unwrap().unwrap().into_data().unwrap();
        let start = Instant::now();
        tokio::time::advance(SECOND).await;
        a.advance(PROGRESS as usize);
        // the read answer's bytes do not move the stuck one's time
        assert_eq!(progress.waiting().refresh(Instant::now()), Some(start));
        drop(stuck);
        assert_eq!(progress.waiting().oldest(), Some(Instant::now()));
        drop(read);
        assert_eq!(progress.waiting().oldest(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn http1_answers_and_empty_ones_never_wait() {
        let progress = Arc::new(Progress::default());
        let mut body = answer(&progress, false, &["a"]);
        assert_eq!(progress.waiting().oldest(), None);
        let mut data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        data.advance(1);
        assert_eq!(progress.waiting().oldest(), None);
        let empty = Windowed::new(Full::new(Bytes::new()), Some(progress.clone()));
        assert_eq!(progress.waiting().oldest(), None);
        drop(empty);
    }
}
