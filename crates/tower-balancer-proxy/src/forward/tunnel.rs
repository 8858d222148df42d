//! A WebSocket tunnel, handed with its answer to whoever serves the answer.
//!
//! Why not spawned where it is made: a tunnel outlives its request by hours, and the server
//! that took the client's connection is the one that must count it (a tunnel holds two
//! descriptors, so it counts against the connection cap as its connection did), wait for it
//! at a stop and close it at the graceful timeout. The forwarder cannot reach that server,
//! so it puts the tunnel in the answer's extensions, and the server takes it when it sees
//! the switch. An answer served by anything else (a stack in another server) runs its
//! tunnel as before: on a task of its own, spawned when the answer is done with.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// A tunnel's work: bytes copied both ways until either side closes.
pub type TunnelFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// In a `101` answer's extensions (or an HTTP/2 extended CONNECT's `200`): the tunnel that
/// joins the client's upgraded connection to the member's. [`Tunnel::take`] it to run it
/// where the client's connection is counted; left there, it is spawned on the runtime when
/// the answer's last extensions are dropped.
#[derive(Clone)]
pub struct Tunnel(Arc<Slot>);

struct Slot(Mutex<Option<TunnelFuture>>);

impl Tunnel {
    /// The tunnel between `client` and `member`.
    pub(crate) fn new(client: OnUpgrade, member: OnUpgrade) -> Self {
        Self(Arc::new(Slot(Mutex::new(Some(Box::pin(run(
            client, member,
        )))))))
    }

    /// The tunnel's future, to run to its end; `None` once taken.
    #[must_use]
    pub fn take(&self) -> Option<TunnelFuture> {
        self.0
             .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").finish_non_exhaustive()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let fut = self
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let (Some(fut), Ok(runtime)) = (fut, tokio::runtime::Handle::try_current()) {
            drop(runtime.spawn(fut));
        }
    }
}

/// Joins the client's and the member's upgraded connections and copies bytes both ways until
/// either side closes (a member that goes away closes its tunnels).
async fn run(client: OnUpgrade, member: OnUpgrade) {
    let (client, member) = match (client.await, member.await) {
        (Ok(c), Ok(m)) => (c, m),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let (mut client, mut member) = (TokioIo::new(client), TokioIo::new(member));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut member).await {
        tracing::debug!(error = %e, "tunnel closed with an error");
    }
}
