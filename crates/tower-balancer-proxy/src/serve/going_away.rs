//! Serving a connection to its end, and the two ways it is asked to go away before that:
//! the server stopping, and an HTTP/2 limit tripping.
//!
//! Why not hyper-util's `Watcher::watch` alone: it knows only the server's stop. A limit
//! that tripped over HTTP/2 (a flood of frames that carry nothing, requests abandoned as a
//! pace) used to close the socket at once, and the client lost every stream under way
//! without learning which had run, so it could retry none of them safely. Now, as on a stop,
//! hyper sends a `GOAWAY` (the last stream it took, once the client answers its `PING`),
//! the answers under way get [`GRACE`] to finish, and then the connection is closed. The
//! socket still cuts a client that goes on flooding meanwhile (`progress.rs`).

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;

use super::progress::Progress;

/// How long the answers under way on a connection an HTTP/2 limit asked to go away have
/// to finish before it is closed.
pub(super) const GRACE: Duration = Duration::from_secs(5);

/// How often, once the server stops, an HTTP/2 connection is looked at: one with nothing
/// under way then is closed. hyper closes it once the client answers the `PING` that goes
/// with its `GOAWAY`; a client that never answers held the stop to its graceful timeout.
pub(super) const STOP_IDLE: Duration = Duration::from_secs(1);

/// Polls `conn` to its end. When the server stops (`stop` changes) or `progress` says a
/// limit tripped, `go_away` starts its graceful end, once; after a limit, `conn` has
/// [`GRACE`] more. `None` when that ran out first.
pub(super) async fn serve<C: Future>(
    mut conn: Pin<&mut C>,
    go_away: impl Fn(Pin<&mut C>),
    stop: &mut watch::Receiver<()>,
    progress: &Progress,
) -> Option<C::Output> {
    let mut stopping = pin!(stop.changed());
    let mut asked = false;
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut idle: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(out) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let limit = grace.is_none() && progress.closing();
        if limit {
            grace = Some(Box::pin(tokio::time::sleep(GRACE)));
        }
        if !asked && (limit || stopping.as_mut().poll(cx).is_ready()) {
            asked = true;
            if !limit {
                idle = Some(Box::pin(tokio::time::sleep(STOP_IDLE)));
            }
            go_away(conn.as_mut());
            // hyper queues its GOAWAY when next polled
            continue;
        }
        if let Some(sleep) = idle.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                if progress.idle_h2() {
                    tracing::debug!("an HTTP/2 client left its stop's PING unanswered: closed");
                    return Poll::Ready(None);
                }
                let next = tokio::time::Instant::now() + STOP_IDLE;
                sleep.as_mut().reset(next);
                continue;
            }
        }
        if let Some(sleep) = grace.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                tracing::debug!("answers still under way when the grace after a GOAWAY ended");
                return Poll::Ready(None);
            }
        }
        return Poll::Pending;
    })
    .await
}
