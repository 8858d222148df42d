//! Opening a member connection, and what a connect that finds no descriptor does.
//!
//! Why a file of its own: a failed connect is either the member's (refused, unreachable,
//! timed out) or the balancer's own, out of file descriptors, which must never be held
//! against the member and which idle pooled connections can often mend. After a burst to
//! one member, its idle connections held every descriptor, and requests pinned to another
//! member failed over to the first, their sessions with them (a hostile test moved 31,315
//! of 40,000 sticky requests so, with no WARN and no failure counted).

use http::Uri;
use tower_balancer::upstream::{UpstreamError, UpstreamErrorKind};
use tower_service::Service;

use super::service::Connector;

/// A new connection to `root` (a member's scheme and authority). Out of descriptors, an
/// idle HTTP/1.1 member connection of any pool in the process, to any member, is closed to
/// make room and the connect is tried again: at once, and, if the room is still to come
/// (another worker's hyper connections close when its thread runs them) or was taken,
/// once more a moment later, with one more closed.
///
/// One at a time, as many as the request needs: closing 32 at once (round 12) cost warm
/// connections that requests beside it reused, which then connected anew and held their
/// places under the cap longer; a burst of 1,000 HTTP/2 streams got 628–818 capacity 503s
/// where keeping them gave 40–108.
pub(super) async fn open(
    connector: &Connector,
    root: Uri,
) -> Result<<Connector as Service<Uri>>::Response, UpstreamError> {
    let mut tries = 0;
    loop {
        match connect_to(connector, root.clone()).await {
            Err(e) if e.kind() == UpstreamErrorKind::Local => {
                // counted and said on every try, the last too (it closes nothing)
                let closed = if tries < 2 {
                    super::idle_relief::close_idle_member_connections(1, std::time::Duration::ZERO)
                } else {
                    0
                };
                out_of_descriptors(closed);
                if closed == 0 {
                    return Err(e);
                }
                if tries == 0 {
                    // hyper's connections close in their own tasks, once they run
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(ROOM_TO_COME).await;
                }
                tries += 1;
            }
            done => return done,
        }
    }
}

/// How long a connect that closed an idle connection and still found no descriptor waits
/// before its last try: the time for another worker's thread to run its closing tasks.
const ROOM_TO_COME: std::time::Duration = std::time::Duration::from_millis(20);

/// One connect to `root`.
async fn connect_to(
    connector: &Connector,
    root: Uri,
) -> Result<<Connector as Service<Uri>>::Response, UpstreamError> {
    let mut connector = connector.clone();
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| UpstreamError::new(UpstreamErrorKind::Connect, e))?;
    connector
        .call(root)
        .await
        .map_err(|e| UpstreamError::new(connect_failure(&*e), e))
}

/// Says, at most once a second, that the process ran out of descriptors for a member
/// connection, and whether an idle one was closed for it.
#[cold]
fn out_of_descriptors(closed: usize) {
    tower_balancer::descriptors::count(tower_balancer::descriptors::Shortage::MemberConnect);
    static BUDGET: tower_balancer::log_budget::LogBudget =
        tower_balancer::log_budget::LogBudget::warn(1, "member connects out of descriptors");
    if BUDGET.admit() {
        if closed == 0 {
            tracing::warn!(
                "out of file descriptors for a member connection, and no idle member \
                 connection closed for it: the request gets 503 (raise the open-file limit, \
                 or lower server.max_connections)"
            );
        } else {
            tracing::warn!(
                closed,
                "out of file descriptors for a member connection: an idle member connection \
                 closed to make room (raise the open-file limit, or lower \
                 server.max_connections)"
            );
        }
    }
}

/// Whose a failed connect is: the balancer's own when it is out of file descriptors (the
/// process's, `EMFILE`, or the system's, `ENFILE`), never to be held against the member
/// (a tester's client ran the balancer out of descriptors, and a healthy member was
/// ejected for it); else the member's.
fn connect_failure(e: &(dyn std::error::Error + 'static)) -> UpstreamErrorKind {
    if tower_balancer::descriptors::out_of_descriptors(e) {
        UpstreamErrorKind::Local
    } else {
        UpstreamErrorKind::Connect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_the_balancers_own_failure_and_a_refusal_the_members() {
        let emfile = std::io::Error::from_raw_os_error(24);
        assert_eq!(connect_failure(&emfile), UpstreamErrorKind::Local);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_failure(&refused), UpstreamErrorKind::Connect);
    }
}
