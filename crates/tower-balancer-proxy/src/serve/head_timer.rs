//! hyper's header-read timer on HTTP/1 connections, on the connection's one
//! [`TaskTimer`] instead of a tokio timer a request.
//!
//! Why: hyper asks its [`Timer`] for a new sleep each time it starts reading a request head
//! and drops it once the head is read, so with hyper-util's `TokioTimer` every request
//! allocated a tokio timer, registered it in the runtime's timer wheel (under the driver's
//! lock) and took it out again: about 430 instructions of a proxied request's ~53,000
//! (`scripts/instructions-check.sh`), for a deadline that almost never fires. Here hyper's
//! sleeps wait on the connection's [`TaskTimer`], armed at the first deadline and moved
//! lazily (see `tower_balancer::task_timer`), which the attempt deadlines of the
//! connection's requests share: a head read in time costs a small allocation (hyper boxes
//! every sleep) and no timer-wheel work.
//!
//! The deadlines are exactly hyper's: what a client gets (408 for a head left half-sent, a
//! closed connection for one never started) does not change.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use tower_balancer::task_timer::{TaskSleep, TaskTimer};

/// A [`Timer`] for one connection's hyper: its sleeps wait on the connection's
/// [`TaskTimer`], the one its requests' attempt deadlines wait on too.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnectionTimer {
    timer: TaskTimer,
}

impl ConnectionTimer {
    /// hyper's timer over a connection's `timer`.
    pub(crate) const fn new(timer: TaskTimer) -> Self {
        Self { timer }
    }
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep(
            self.timer
                .sleep_until(tokio::time::Instant::from_std(deadline)),
        ))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            Some(mut s) => s.0.reset(tokio::time::Instant::from_std(new_deadline)),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    // tokio's clock, which tests pause and advance, rather than the system's
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// One of hyper's sleeps: a [`TaskSleep`] on the connection's timer.
#[derive(Debug)]
struct HeadSleep(TaskSleep);

impl Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
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
        let t = ConnectionTimer::new(TaskTimer::new());
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
        let t = ConnectionTimer::new(TaskTimer::new());
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
