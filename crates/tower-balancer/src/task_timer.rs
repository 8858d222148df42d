//! One tokio timer for the deadlines a task waits on one after another: a connection's
//! request-head deadline, then its request's attempt deadline, then the next head's.
//!
//! Why: a tokio sleep made per deadline is allocated, registered in the runtime's timer
//! wheel under the driver's lock when first polled, and taken out again when dropped. A
//! balancer arms one per proxied request for the attempt's timeout (a member that hangs
//! must not hold a request for ever) and hyper one for the next request's head, and almost
//! none of them fire: together about 2,000 instructions of a request's ~53,000
//! (`scripts/instructions-check.sh`). A [`TaskTimer`] keeps one tokio sleep for a task,
//! armed at the first deadline and moved lazily: a later deadline leaves it where it is,
//! and when it fires before the deadline now waited on, it is moved to that one then. A
//! deadline met in time costs no timer-wheel work at all, and a task is woken for nothing
//! at most once per deadline's length.
//!
//! The timer serves one sleep at a time; a sleep made while another is waiting on it gets a
//! tokio sleep of its own, so any number of them always end at their own deadlines. A
//! server makes a timer per connection and polls the connection inside
//! [`TaskTimer::scope`]; [`sleep_until`] then uses it, and a tokio sleep of its own anywhere
//! else (in a task no server scoped, in tests, in another runtime's task).
//!
//! ```
//! use std::time::Duration;
//! use tower_balancer::task_timer::{sleep_until, TaskTimer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let timer = TaskTimer::new();
//! let start = tokio::time::Instant::now();
//! timer
//!     .scope(async {
//!         // both on the connection's one timer, one after the other
//!         sleep_until(start + Duration::from_secs(1)).await;
//!         sleep_until(start + Duration::from_secs(3)).await;
//!     })
//!     .await;
//! assert_eq!(start.elapsed(), Duration::from_secs(3));
//! # }
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

#[derive(Debug, Default)]
struct Shared {
    /// The tokio sleep, made for the first deadline.
    timer: Option<Pin<Box<Sleep>>>,
    /// A sleep is waiting on the timer.
    taken: bool,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &SharedRef) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The timer of the task whose scoped future this thread is polling.
    static CURRENT: RefCell<Option<SharedRef>> = const { RefCell::new(None) };
}

/// One tokio timer for a task's deadlines, one at a time (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct TaskTimer {
    shared: SharedRef,
}

impl TaskTimer {
    /// A timer; its tokio sleep is made for the first deadline.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A sleep until `deadline` on this timer, or on one of its own when another sleep is
    /// waiting on this one.
    #[must_use]
    pub fn sleep_until(&self, deadline: Instant) -> TaskSleep {
        TaskSleep::on(&self.shared, deadline)
    }

    /// `fut`, polled with this timer as the one [`sleep_until`] uses.
    pub fn scope<F: Future>(&self, fut: F) -> Scoped<F> {
        Scoped {
            fut,
            timer: Some(self.shared.clone()),
        }
    }
}

/// A sleep until `deadline`: on the timer of the task being polled when there is one
/// ([`TaskTimer::scope`]), else a tokio sleep of its own.
#[must_use]
pub fn sleep_until(deadline: Instant) -> TaskSleep {
    let current = CURRENT.with(|c| c.borrow().clone());
    match current {
        Some(shared) => TaskSleep::on(&shared, deadline),
        None => TaskSleep {
            deadline,
            kind: Kind::Own(Box::pin(tokio::time::sleep_until(deadline))),
        },
    }
}

#[derive(Debug)]
enum Kind {
    /// Waiting on a task's timer (and holding it).
    Shared(SharedRef),
    /// A tokio sleep of its own.
    Own(Pin<Box<Sleep>>),
}

/// A future that ends at its deadline (from [`sleep_until`] or [`TaskTimer::sleep_until`]).
#[derive(Debug)]
pub struct TaskSleep {
    deadline: Instant,
    kind: Kind,
}

impl TaskSleep {
    fn on(shared: &SharedRef, deadline: Instant) -> Self {
        let kind = {
            let mut s = lock(shared);
            if s.taken {
                Kind::Own(Box::pin(tokio::time::sleep_until(deadline)))
            } else {
                s.taken = true;
                Kind::Shared(shared.clone())
            }
        };
        Self { deadline, kind }
    }

    /// When it ends.
    #[must_use]
    pub const fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline, earlier or later.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if let Kind::Own(sleep) = &mut self.kind {
            sleep.as_mut().reset(deadline);
        }
    }

    /// Whether it waits on a task's timer rather than a tokio sleep of its own.
    #[must_use]
    pub const fn is_shared(&self) -> bool {
        matches!(self.kind, Kind::Shared(_))
    }
}

impl Future for TaskSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let shared = match &mut self.kind {
            Kind::Own(sleep) => return sleep.as_mut().poll(cx),
            Kind::Shared(shared) => shared,
        };
        let mut s = lock(shared);
        let timer = s
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            // armed for later than this deadline: brought forward
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // the timer never stands later than this deadline (above), so it fired at this
        // deadline or at an older one, for a sleep gone since: then it is moved here
        if timer.deadline() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
        timer.as_mut().poll(cx)
    }
}

impl Drop for TaskSleep {
    fn drop(&mut self) {
        if let Kind::Shared(shared) = &self.kind {
            // the timer stays armed where it is: moving it would cost what it saves
            lock(shared).taken = false;
        }
    }
}

pin_project! {
    /// A future polled with a [`TaskTimer`] as the one [`sleep_until`] uses
    /// ([`TaskTimer::scope`]).
    #[derive(Debug)]
    pub struct Scoped<F> {
        #[pin]
        fut: F,
        timer: Option<SharedRef>,
    }
}

/// Puts the scope's timer back where it was when a poll ends, even by a panic.
struct Restore<'a> {
    slot: &'a mut Option<SharedRef>,
    previous: Option<SharedRef>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        *self.slot = CURRENT.with(|c| c.replace(previous));
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // moved in and out, not cloned: no reference counting per poll
        let previous = CURRENT.with(|c| c.replace(this.timer.take()));
        let _restore = Restore {
            slot: this.timer,
            previous,
        };
        this.fut.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    const S: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn sleeps_one_after_another_share_the_timer_and_end_at_their_own_deadlines() {
        let t = TaskTimer::new();
        let start = Instant::now();
        // armed at 10 s, then dropped: the timer stays there
        let mut first = t.sleep_until(start + 10 * S);
        assert!(first.is_shared());
        assert!(poll_once(&mut first).is_pending());
        drop(first);
        tokio::time::advance(4 * S).await;
        // a later deadline: the old one passes first and must not end it
        let second = t.sleep_until(start + 14 * S);
        assert!(second.is_shared());
        second.await;
        assert_eq!(start.elapsed(), 14 * S);
        // an earlier deadline than the one armed brings the timer forward
        let mut far = t.sleep_until(start + 100 * S);
        assert!(poll_once(&mut far).is_pending());
        drop(far);
        t.sleep_until(start + 15 * S).await;
        assert_eq!(start.elapsed(), 15 * S);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_sleep_waiting_at_once_gets_its_own_and_both_keep_time() {
        let t = TaskTimer::new();
        let start = Instant::now();
        let late = t.sleep_until(start + 5 * S);
        let early = t.sleep_until(start + 2 * S);
        assert!(late.is_shared());
        assert!(!early.is_shared());
        let (a, b) = tokio::join!(
            async {
                late.await;
                start.elapsed()
            },
            async {
                early.await;
                start.elapsed()
            }
        );
        assert_eq!((a, b), (5 * S, 2 * S));
        // both gone: the next one has the timer again
        assert!(t.sleep_until(start + 6 * S).is_shared());
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_sleep_either_way() {
        let t = TaskTimer::new();
        let start = Instant::now();
        let mut s = t.sleep_until(start + S);
        assert!(poll_once(&mut s).is_pending());
        s.reset(start + 5 * S);
        assert_eq!(s.deadline(), start + 5 * S);
        s.await;
        assert_eq!(start.elapsed(), 5 * S);
        let mut own = sleep_until(start + 9 * S);
        assert!(!own.is_shared());
        own.reset(start + 7 * S);
        own.await;
        assert_eq!(start.elapsed(), 7 * S);
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_until_uses_the_scoped_timer_inside_the_scope_only() {
        let t = TaskTimer::new();
        let start = Instant::now();
        assert!(!sleep_until(start + S).is_shared());
        let inside = t
            .scope(async {
                let s = sleep_until(start + S);
                let shared = s.is_shared();
                s.await;
                // nested scopes put the outer timer back
                let other = TaskTimer::new();
                other.scope(async {}).await;
                (shared, sleep_until(start + 2 * S).is_shared())
            })
            .await;
        assert_eq!(inside, (true, true));
        assert!(!sleep_until(start + S).is_shared(), "the scope leaked");
    }
}
