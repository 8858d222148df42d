//! The header-read timer hyper runs on every request of an HTTP/1 connection, on one tokio
//! timer a connection instead of one a request.
//!
//! Why: hyper asks its [`Timer`] for a new sleep each time it starts reading a request head
//! and drops it once the head is read, so with hyper-util's `TokioTimer` every request
//! allocated a tokio timer, registered it in the runtime's timer wheel (under the driver's
//! lock) and took it out again: about 1,200 instructions of a proxied request's ~53,000
//! (`scripts/instructions-check.sh`), for a deadline that almost never fires. Here each
//! connection keeps one tokio timer, armed at the first deadline hyper asks for and moved
//! lazily, the way the idle timer of [`Watched`](super::timeout) is: a later deadline leaves
//! it where it is, and when it fires before the deadline of the head now being read, it is
//! moved to that deadline then. A head read in time costs a small allocation (hyper boxes
//! every sleep) and no timer-wheel work; a connection whose heads take longer than the old
//! deadline is woken once for nothing, at most once per header-read timeout.
//!
//! The deadlines are exactly hyper's: what a client gets (408 for a head left half-sent, a
//! closed connection for one never started) does not change.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// The connection's one tokio timer, made on the first head.
type Shared = Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>;

/// A [`Timer`] for one connection's hyper: every sleep it makes shares one tokio timer.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnectionTimer {
    shared: Shared,
}

impl ConnectionTimer {
    /// A timer for a new connection; its tokio timer is made when hyper first asks.
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep {
            deadline: tokio::time::Instant::from_std(deadline),
            shared: self.shared.clone(),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            Some(mut s) => s.deadline = tokio::time::Instant::from_std(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    // tokio's clock, which tests pause and advance, rather than the system's
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// One of hyper's sleeps: a deadline over the connection's shared timer.
#[derive(Debug)]
struct HeadSleep {
    deadline: tokio::time::Instant,
    shared: Shared,
}

impl Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let timer = shared.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            // armed for later than this head may take: brought forward
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // the timer never stands later than this deadline (above), so it fired at this
        // deadline or at an older one, for a head read in time since: then it is moved here
        if timer.deadline() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once(s: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        s.as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn each_sleep_ends_at_its_own_deadline_over_one_timer() {
        let t = ConnectionTimer::new();
        let start = tokio::time::Instant::now();
        // a first head, read in time: its sleep is dropped, the timer stays at 10 s
        let mut first = t.sleep(Duration::from_secs(10));
        assert!(poll_once(&mut first).is_pending());
        drop(first);
        tokio::time::advance(Duration::from_secs(4)).await;
        // a second head at 4 s, deadline 14 s: not over when the old deadline passes
        let second = t.sleep(Duration::from_secs(10));
        let ended = tokio::spawn(async move {
            second.await;
            tokio::time::Instant::now()
        })
        .await
        .unwrap();
        assert_eq!(ended - start, Duration::from_secs(14));
        // an earlier deadline than the one armed brings the timer forward
        let mut far = t.sleep(Duration::from_secs(60));
        assert!(poll_once(&mut far).is_pending());
        let near = t.sleep(Duration::from_secs(1));
        let now = tokio::time::Instant::now();
        near.await;
        assert_eq!(tokio::time::Instant::now() - now, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_sleep_and_now_is_tokios_clock() {
        let t = ConnectionTimer::new();
        let before = t.now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(t.now() - before, Duration::from_secs(3));
        let mut s = t.sleep(Duration::from_secs(1));
        assert!(poll_once(&mut s).is_pending());
        t.reset(&mut s, t.now() + Duration::from_secs(5));
        let now = tokio::time::Instant::now();
        s.await;
        assert_eq!(tokio::time::Instant::now() - now, Duration::from_secs(5));
    }
}
