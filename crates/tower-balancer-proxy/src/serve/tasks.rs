//! The tasks a server runs for its clients, one a connection and one an HTTP/2 stream, owned
//! by the server so that a stop ends them itself.
//!
//! Why: when the graceful timeout ran out, `Server::serve` used to return and leave the
//! connections still waiting on a member to whoever dropped the runtime, after the access
//! log's writer had finished. The requests they held got no line at all, so the log of a
//! stop that cut requests did not show which. Now the server aborts the connections it
//! spawned (a `JoinSet` in its loop) and waits for them and for their HTTP/2 streams (which
//! end with their connection) to go: each request's future is dropped inside the server, and
//! its access log line is written (with 444, [`dropped_at_stop`]) before the writer finishes.
//!
//! WebSocket tunnels are the server's too: an HTTP/1.1 connection's runs in its connection's
//! task (holding its slot under the connection caps), an HTTP/2 stream's beside its
//! connection; a stop waits for them within the graceful timeout, then closes them.
//!
//! Why a flag read on drop, not a cancellation future polled beside each task: a task is
//! polled a few times a request, and a `CancellationToken` takes two locks a poll (a tunnel,
//! polled per read and not per request, does race one).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::forward::TunnelFuture;

thread_local! {
    /// Set while a stop drops a client task's future on this thread.
    static AT_STOP: Cell<bool> = const { Cell::new(false) };
}

/// How long the tasks of a stop have to go once aborted: dropping a future is immediate, so
/// this only bounds a task the runtime cannot reach (a worker blocked elsewhere).
const ABORT_LIMIT: Duration = Duration::from_secs(1);

/// A server's client tasks: the flag its stop sets, the HTTP/2 streams hyper spawned (the
/// executor given to hyper) and the WebSocket tunnels running. The connections are in the
/// server loop's `JoinSet`; an HTTP/1.1 connection's tunnel runs in its connection's task.
#[derive(Debug, Clone, Default)]
pub(super) struct Tasks {
    streams: TaskTracker,
    stopping: Arc<AtomicBool>,
    /// Tunnels running, for the stop's count of what it closed.
    tunnels: Arc<AtomicUsize>,
    /// Cancelled when the stop closes the tunnels.
    cut: CancellationToken,
    /// The server's places under its connection cap, one a descriptor: an HTTP/2 stream
    /// beside others under way, and a tunnel, take one of their own (each holds a member
    /// connection while it lasts).
    places: Option<Arc<Semaphore>>,
}

impl Tasks {
    /// No tasks yet.
    #[cfg(test)]
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// No tasks yet; HTTP/2 tunnels take their places from `places`.
    pub(super) fn with_places(places: Arc<Semaphore>) -> Self {
        Self {
            places: Some(places),
            ..Self::default()
        }
    }

    /// A place under the connection cap for an HTTP/2 stream's member connection (a tunnel's,
    /// or a request's beside others under way): `Ok(None)` with no cap, `Err` when the cap
    /// is reached.
    pub(super) fn member_place(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        self.places
            .clone()
            .map(|p| p.try_acquire_owned().map_err(drop))
            .transpose()
    }

    /// `task`, made to tell [`dropped_at_stop`] when the stop drops it.
    pub(super) fn own<F: Future>(&self, task: F) -> Owned<F> {
        Owned {
            inner: Some(task),
            stopping: self.stopping.clone(),
        }
    }

    /// Runs `tunnel` (an HTTP/1.1 connection's, in its connection's task) until it ends or
    /// the stop closes it.
    pub(super) async fn run_tunnel(&self, tunnel: TunnelFuture) {
        let _open = Open::count(&self.tunnels);
        tokio::select! {
            () = tunnel => {}
            () = self.cut.cancelled() => {}
        }
    }

    /// Runs `tunnel` (an HTTP/2 stream's) on a task of the server's, beside its connection,
    /// holding `place` (its places under the connection caps) while it lasts.
    pub(super) fn spawn_tunnel(&self, tunnel: TunnelFuture, place: super::place::MemberPlace) {
        let tasks = self.clone();
        drop(self.streams.spawn(self.own(async move {
            let _place = place;
            tasks.run_tunnel(tunnel).await;
        })));
    }

    /// Tunnels running now.
    pub(super) fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Relaxed)
    }

    /// Completes once the connections in `set` and every HTTP/2 stream have ended.
    pub(super) async fn finished(&self, set: &mut JoinSet<()>) {
        while set.join_next().await.is_some() {}
        self.streams.close();
        self.streams.wait().await;
    }

    /// Drops every task still running, saying it is the stop's doing, and waits (within
    /// [`ABORT_LIMIT`]) until each has gone.
    pub(super) async fn abort(&self, set: &mut JoinSet<()>) {
        self.stopping.store(true, Ordering::Relaxed);
        self.cut.cancel();
        // a stream ends once its connection is gone (hyper sees the stream reset)
        set.abort_all();
        if tokio::time::timeout(ABORT_LIMIT, self.finished(set))
            .await
            .is_err()
        {
            tracing::warn!(
                connections = set.len(),
                streams = self.streams.len(),
                "client tasks still running after the stop dropped them"
            );
        }
    }
}

/// hyper spawns each HTTP/2 stream's service future here, so a stop waits for those too and
/// their requests' lines say 444.
impl<F> hyper::rt::Executor<F> for Tasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        drop(self.streams.spawn(self.own(fut)));
    }
}

pin_project! {
    /// A client task's future. Dropped after the server's stop began dropping tasks, it
    /// drops its inner future with [`dropped_at_stop`] true.
    pub(super) struct Owned<F> {
        #[pin]
        inner: Option<F>,
        stopping: Arc<AtomicBool>,
    }

    impl<F> PinnedDrop for Owned<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.stopping.load(Ordering::Relaxed) {
                let _at_stop = AtStop::enter();
                this.inner.set(None);
            }
        }
    }
}

impl<F: Future> Future for Owned<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().inner.as_pin_mut() {
            Some(task) => task.poll(cx).map(drop),
            None => Poll::Ready(()),
        }
    }
}

/// One tunnel counted in [`Tasks::tunnels`] while it runs.
struct Open<'a>(&'a AtomicUsize);

impl<'a> Open<'a> {
    fn count(tunnels: &'a AtomicUsize) -> Self {
        tunnels.fetch_add(1, Ordering::Relaxed);
        Self(tunnels)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// [`AT_STOP`] set for its life, cleared even if a drop panics.
struct AtStop;

impl AtStop {
    fn enter() -> Self {
        AT_STOP.with(|s| s.set(true));
        Self
    }
}

impl Drop for AtStop {
    fn drop(&mut self) {
        AT_STOP.with(|s| s.set(false));
    }
}

/// Whether the server's stop is dropping the task this runs in: a request's future being
/// dropped now was cut by the graceful timeout, not by its client.
pub(crate) fn dropped_at_stop() -> bool {
    AT_STOP.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A future that notes, as it is dropped, whether a stop cut it.
    struct Notes(Arc<Mutex<Option<bool>>>);

    impl Drop for Notes {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(dropped_at_stop());
        }
    }

    /// A task that holds `notes` until it is dropped, or for `run` when given.
    async fn holding(notes: Notes, run: Option<Duration>) {
        let _notes = notes;
        match run {
            Some(run) => tokio::time::sleep(run).await,
            None => std::future::pending().await,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_connection_drops_its_future_knowing_it_was_the_stop() {
        let tasks = Tasks::new();
        let mut set = JoinSet::new();
        let seen = Arc::new(Mutex::new(None));
        set.spawn(tasks.own(holding(Notes(seen.clone()), None)));
        tokio::task::yield_now().await;
        assert_eq!(*seen.lock().unwrap(), None, "still running");
        tasks.abort(&mut set).await;
        assert_eq!(*seen.lock().unwrap(), Some(true));
        assert!(set.is_empty());
        assert!(!dropped_at_stop(), "outside a stop's drop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ends_by_itself_does_not_say_stop() {
        let tasks = Tasks::new();
        let mut set = JoinSet::new();
        let seen = Arc::new(Mutex::new(None));
        let run = Some(Duration::from_millis(5));
        set.spawn(tasks.own(holding(Notes(seen.clone()), run)));
        tasks.finished(&mut set).await;
        assert_eq!(*seen.lock().unwrap(), Some(false));
    }

    /// An HTTP/2 stream as hyper runs it: it ends when its connection goes, and its service
    /// future (here `notes`) is dropped with the task.
    struct Stream {
        _notes: Notes,
        conn: tokio::sync::oneshot::Receiver<()>,
    }

    impl Future for Stream {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            Pin::new(&mut self.conn).poll(cx).map(drop)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_stop_waits_for_the_streams_hyper_spawned_and_they_say_stop() {
        let tasks = Tasks::new();
        let mut set = JoinSet::new();
        let seen = Arc::new(Mutex::new(None));
        let (conn, gone) = tokio::sync::oneshot::channel::<()>();
        set.spawn(tasks.own(async move {
            let _conn = conn;
            std::future::pending::<()>().await;
        }));
        let stream = Stream {
            _notes: Notes(seen.clone()),
            conn: gone,
        };
        hyper::rt::Executor::execute(&tasks, stream);
        tokio::task::yield_now().await;
        assert_eq!(*seen.lock().unwrap(), None, "still running");
        tasks.abort(&mut set).await;
        assert_eq!(*seen.lock().unwrap(), Some(true));
    }
}
