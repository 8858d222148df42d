//! The writer of a runtime's plain member connections: one task that writes the request
//! heads queued during a scheduler tick, together, after the tasks that queued them.
//!
//! Why: see [`conn`](super::conn). A head is queued by its request's task, which goes on to
//! wait for the answer; the writer, woken by the first head of a tick, runs after the tasks
//! already scheduled and writes every head queued by then. What it cannot write without
//! waiting (a full socket) or fails to write goes back to the request's task.
//!
//! There is one writer per thread and runtime, started by the first head queued there; a
//! head on a thread with no tokio runtime is written by its own task.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use tokio::runtime::{Handle, Id};

use super::conn::Plain;

/// What the request tasks and the writer share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    conns: Vec<Arc<Plain>>,
    /// The writer, to wake when the queue stops being empty.
    waker: Option<Waker>,
    /// False once the writer's task is gone (its runtime shut down).
    gone: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    /// This thread's writer, with the runtime it runs on.
    static WRITER: RefCell<Option<(Id, Arc<Shared>)>> = const { RefCell::new(None) };
}

/// Marks the writer gone when its task is dropped, polled or not.
struct Gone(Arc<Shared>);

impl Drop for Gone {
    fn drop(&mut self) {
        let conns = {
            let mut q = self.0.queue();
            q.gone = true;
            std::mem::take(&mut q.conns)
        };
        // heads still queued are not written: their requests are going with the runtime
        for c in conns {
            c.abandon();
        }
    }
}

/// Queues `conn`'s head for this thread's writer; false if there is none to be had (no
/// runtime here), and the caller writes it.
pub(super) fn queue(conn: Arc<Plain>) -> bool {
    let Ok(handle) = Handle::try_current() else {
        return false;
    };
    let id = handle.id();
    WRITER.with(|w| {
        let mut w = w.borrow_mut();
        if let Some((wid, shared)) = w.as_ref() {
            if *wid == id {
                let mut q = shared.queue();
                if !q.gone {
                    q.conns.push(conn);
                    let waker = if q.conns.len() == 1 {
                        q.waker.take()
                    } else {
                        None
                    };
                    drop(q);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return true;
                }
            }
        }
        let shared = Arc::new(Shared::default());
        shared.queue().conns.push(conn);
        handle.spawn(write_all(Gone(shared.clone())));
        *w = Some((id, shared));
        true
    })
}

/// The writer's task: writes what is queued each time it is woken, until its runtime ends.
async fn write_all(gone: Gone) {
    let shared = gone.0.clone();
    let mut batch = Vec::new();
    std::future::poll_fn(move |cx| loop {
        {
            let mut q = shared.queue();
            std::mem::swap(&mut q.conns, &mut batch);
            if batch.is_empty() {
                if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    q.waker = Some(cx.waker().clone());
                }
                return Poll::<()>::Pending;
            }
        }
        for conn in batch.drain(..) {
            conn.write_queued();
        }
    })
    .await;
    drop(gone);
}
