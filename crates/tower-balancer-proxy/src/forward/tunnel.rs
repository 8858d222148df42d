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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A tunnel's work: bytes copied both ways until either side closes.
pub type TunnelFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// In a `101` answer's extensions (or an HTTP/2 extended CONNECT's `200`): the tunnel that
/// joins the client's upgraded connection to the member's. [`Tunnel::take`] it to run it
/// where the client's connection is counted; left there, it is spawned on the runtime when
/// the answer's last extensions are dropped.
#[derive(Clone)]
pub struct Tunnel(Arc<Slot>);

struct Slot(Mutex<Option<TunnelFuture>>, Meter);

/// Where a running tunnel counts what it passes, once whoever runs it says.
type Meter = Arc<OnceLock<TunnelBytes>>;

/// Bytes tunnels passed, to members and to clients; clones share the counts. A server
/// counts its tunnels' bytes in one, for metrics: a WebSocket's traffic is no request's,
/// so no access-log line or response-size count has it.
#[derive(Debug, Clone, Default)]
pub struct TunnelBytes(Arc<[AtomicU64; 2]>);

impl TunnelBytes {
    /// Bytes passed from clients to members.
    #[must_use]
    pub fn to_members(&self) -> u64 {
        self.0[0].load(Ordering::Relaxed)
    }

    /// Bytes passed from members to clients.
    #[must_use]
    pub fn to_clients(&self) -> u64 {
        self.0[1].load(Ordering::Relaxed)
    }

    fn add(&self, to_member: bool, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.0[usize::from(!to_member)].fetch_add(n, Ordering::Relaxed);
    }
}

impl Tunnel {
    /// The tunnel between `client` and `member`, closed after `idle` with nothing sent.
    pub(crate) fn new(client: OnUpgrade, member: OnUpgrade, idle: Duration) -> Self {
        let meter = Meter::default();
        let run = Box::pin(run(client, member, idle, meter.clone()));
        Self(Arc::new(Slot(Mutex::new(Some(run)), meter)))
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

    /// [`take`](Self::take), its bytes counted in `bytes` as they pass.
    #[must_use]
    pub fn take_counted(&self, bytes: &TunnelBytes) -> Option<TunnelFuture> {
        let tunnel = self.take()?;
        let _ = self.0 .1.set(bytes.clone());
        Some(tunnel)
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
/// both have ended, either fails, or nothing passes either way for `idle`; then both
/// connections are closed. A side that ends its half has its end passed on, and the other
/// way goes on (an upload, its end, then the member's reply) while bytes pass, for at most
/// [`HALF_CLOSED_IDLE`] of silence: a client that left a silent member (its end and a
/// closed socket look alike) does not hold the tunnel, or its place under the server's
/// caps, for longer.
async fn run(client: OnUpgrade, member: OnUpgrade, idle: Duration, meter: Meter) {
    let (client, member) = match (client.await, member.await) {
        (Ok(c), Ok(m)) => (c, m),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let (mut client_read, mut client_write) = tokio::io::split(TokioIo::new(client));
    let (mut member_read, mut member_write) = tokio::io::split(TokioIo::new(member));
    let last = Activity::new();
    let ended = {
        let up = copy(&mut client_read, &mut member_write, (&last, &meter, true));
        let down = copy(&mut member_read, &mut client_write, (&last, &meter, false));
        tokio::pin!(up, down);
        let first = tokio::select! {
            e = &mut up => e.map(|()| Some(true)),
            e = &mut down => e.map(|()| Some(false)),
            () = quiet(&last, idle) => Ok(None),
        };
        match first {
            // one side ended its half: the other way goes on while bytes pass
            Ok(Some(client_ended)) => {
                let rest = if client_ended { down } else { up };
                tokio::select! {
                    e = rest => e.map(|()| "both sides ended it"),
                    () = quiet(&last, idle.min(HALF_CLOSED_IDLE)) => {
                        Ok("nothing passed after one side ended it")
                    }
                }
            }
            Ok(None) => Ok("nothing passed for the tunnel's idle timeout"),
            Err(e) => Err(e),
        }
    };
    match ended {
        Ok(why) => tracing::debug!(why, "tunnel closed"),
        Err(e) => tracing::debug!(error = %e, "tunnel closed with an error"),
    }
    // what is still open is closed now, FIN first where it goes
    let _ = tokio::time::timeout(SHUTDOWN_LIMIT, async {
        let _ = tokio::join!(client_write.shutdown(), member_write.shutdown());
    })
    .await;
}

/// How long a tunnel one side has ended may pass nothing before it is closed.
const HALF_CLOSED_IDLE: Duration = Duration::from_secs(10);

/// How long closing a tunnel's connections may wait on a peer that does not read.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

/// Bytes from `from` to `to` until `from` ends, whose end is then passed on (`Ok`), or either
/// fails; `last` is set at every read, and what is written counted on the meter (bytes to
/// the member when `to_member`).
async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    (last, meter, to_member): (&Activity, &Meter, bool),
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        last.touch();
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        if let Some(bytes) = meter.get() {
            bytes.add(to_member, n);
        }
    }
}

/// When a tunnel last read anything, either way (in milliseconds since it began: the two
/// directions' futures share it).
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Completes once nothing has been read either way for `idle`.
async fn quiet(last: &Activity, idle: Duration) {
    loop {
        let until = last.last() + idle;
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep_until(until).await;
    }
}
