//! The server loop: accept under the connection caps, hand each connection its task
//! (`connection.rs`), and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::ServeConfig;
use super::place::ClientSide;
use super::reload::LiveSettings;
use super::stack::Servable;
use super::stats::ServerStats;
use super::tasks::Tasks;

/// A client connection's places under the cap, which counts descriptors: its own and the
/// member connection its request may need (the cap is half the descriptors for that).
const CONNECTION: usize = 2;

/// The places under the connection cap, made by the first server of a front to serve and
/// shared by every server whose settings come from the same [`ServeConfig`] (the workers
/// on one port): descriptors are the process's, so the cap is too. A server with another
/// cap makes its own.
#[derive(Debug, Default)]
pub(crate) struct SharedPlaces(Mutex<Option<(usize, Arc<Semaphore>)>>);

impl SharedPlaces {
    /// The places of a cap of `cap` connections.
    fn for_cap(&self, cap: usize) -> Arc<Semaphore> {
        let mut places = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &*places {
            Some((c, shared)) if *c == cap => shared.clone(),
            _ => {
                let made = Arc::new(Semaphore::new(
                    cap.saturating_mul(CONNECTION).min(Semaphore::MAX_PERMITS),
                ));
                *places = Some((cap, made.clone()));
                made
            }
        }
    }
}

/// Serves a tower stack to clients. See the crate docs for a complete example.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    settings: LiveSettings,
}

impl Server {
    /// Listens on `addr`.
    ///
    /// # Errors
    /// The listener's error, e.g. the port is in use or needs privileges.
    pub async fn bind(addr: SocketAddr, config: ServeConfig) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            settings: LiveSettings::new(config),
        })
    }

    /// Listens on `addr` with `SO_REUSEPORT`, so that several servers (one per thread, each
    /// on its own single-threaded runtime, as nginx runs one worker per core) share the port
    /// and the kernel spreads connections between them. Unix only.
    ///
    /// # Errors
    /// The socket's error, e.g. the port is in use by a listener without `SO_REUSEPORT`.
    #[cfg(unix)]
    pub fn bind_reuseport(addr: SocketAddr, config: ServeConfig) -> io::Result<Self> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        Ok(Self {
            listener: socket.listen(1024)?,
            settings: LiveSettings::new(config),
        })
    }

    /// Serves on a listener the caller bound: a socket handed over by systemd or another
    /// supervisor, or one of several `SO_REUSEPORT` listeners, one per runtime.
    #[must_use]
    pub fn from_listener(listener: TcpListener, config: ServeConfig) -> Self {
        Self {
            listener,
            settings: LiveSettings::new(config),
        }
    }

    /// The connections and TLS handshakes this server (and every server sharing its
    /// [`ServeConfig`]) counted, for metrics.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        self.settings.current().stats.clone()
    }

    /// Its settings, to replace while it serves (a reloaded certificate, new timeouts).
    #[must_use]
    pub fn settings(&self) -> LiveSettings {
        self.settings.clone()
    }

    /// Serves with `settings`, shared with the servers it came from (workers on one port):
    /// one replace reaches them all.
    #[must_use]
    pub fn with_settings(mut self, settings: LiveSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The address listened on.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `stack` until `shutdown` completes, then stops accepting and gives in-flight
    /// requests the graceful timeout to finish. Each request carries [`ClientAddr`](tower_balancer::client::ClientAddr) and, over
    /// TLS, [`ClientTls`](tower_balancer::client::ClientTls) in its extensions.
    ///
    /// # Errors
    /// Only errors that stop the whole server; a failing connection is logged and dropped.
    pub async fn serve<S: Servable>(
        self,
        stack: S,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let graceful = GracefulShutdown::new();
        let settings = self.settings.current();
        let cap = settings
            .max_connections
            .unwrap_or_else(super::config::default_max_connections);
        // counted in descriptors: a connection takes two (its own and the member connection
        // its request may need), and an HTTP/2 stream beside others, or a tunnel, one (its
        // member connection); shared with the other workers on the port
        let slots = settings.places.for_cap(cap);
        if settings.max_connections.is_some() {
            super::config::cap_past_descriptors(cap);
        }
        drop(settings);
        // every connection's task, and every HTTP/2 stream's, to drop at the timeout; an
        // HTTP/2 tunnel takes a place under the cap of its own
        let tasks = Tasks::with_places(slots.clone());
        let mut connections = tokio::task::JoinSet::new();
        // the own HTTP/1.1 path's connections hear of the stop here (hyper's, from `graceful`)
        let (stopping, stop) = tokio::sync::watch::channel(());
        let mut shutdown = pin!(shutdown);
        // the counts of log lines a budget held back are written within a second, not only
        // at the next line it lets through (which may be days after an outage)
        let _counts = tower_balancer::log_budget::spawn_reporter();
        loop {
            let Some(accepted) = self.accept(shutdown.as_mut()).await else {
                break;
            };
            let (sock, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            };
            // the settings as they are now: a reload reaches the next connection
            let config = self.settings.current();
            let Ok(counted) = count_client(&config, peer) else {
                // past the client's cap: closed before a byte is read
                drop(sock);
                continue;
            };
            // at the cap, it waits unread for a connection to close (and the ones behind it
            // in the backlog), so descriptors stay for members and probes
            let Some(slot) = place(&slots, shutdown.as_mut()).await else {
                break;
            };
            let _ = sock.set_nodelay(true);
            super::unsent::limit_unsent(&sock);
            let open = config.stats.connection();
            // the ones that ended, so the set holds only live connections
            while connections.try_join_next().is_some() {}
            let client = ClientSide::of(&config, counted.as_ref());
            connections.spawn(tasks.own(super::connection::connection(
                sock,
                (peer, client),
                (stack.clone(), tasks.clone()),
                config,
                (graceful.watcher(), stop.clone()),
                (slot, open, counted),
            )));
        }
        drop(self.listener);
        stopping.send_replace(());
        let grace = self.settings.current().graceful_timeout;
        drain(grace, graceful, &tasks, &mut connections).await;
        Ok(())
    }
}

/// The stop: the requests under way get `grace` to finish, then what is left is dropped.
async fn drain(
    grace: std::time::Duration,
    graceful: GracefulShutdown,
    tasks: &Tasks,
    connections: &mut tokio::task::JoinSet<()>,
) {
    let drained = async {
        graceful.shutdown().await;
        tasks.finished(connections).await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        // how many, so an operator knows what the stop cost (their requests get no answer)
        tracing::warn!(
            connections = connections.len(),
            tunnels = tasks.tunnels(),
            "graceful shutdown timed out; remaining connections are dropped"
        );
        // dropped here, not by whoever drops the runtime: the requests they held are
        // in the access log (444) before its writer finishes
        tasks.abort(connections).await;
    }
}

/// An accept failed (out of file descriptors and the like): said, one WARN a second (the
/// rest at DEBUG and counted, not one every wait), and a moment waited before serving on.
///
/// Out of descriptors, one idle member connection of any pool that has waited a second or
/// more is closed first, and the next accept is tried at once. Idle pooled connections
/// hold descriptors outside the connection cap's places, so after a burst they could keep
/// new clients out until they timed out (round 11: accepts failed for about 6 s). A warm
/// connection, reused within the second, stays: closing it for an accept (round 12) left
/// the keep-alive clients it served no connection and no descriptor to open one, and 309 of
/// their 394 requests got 503, where keeping it gave 396 of 396.
async fn accept_failed(e: &io::Error) {
    static FAILED: tower_balancer::log_budget::LogBudget =
        tower_balancer::log_budget::LogBudget::warn(1, "failed accepts");
    let closed = if tower_balancer::descriptors::out_of_descriptors(e) {
        tower_balancer::descriptors::count(tower_balancer::descriptors::Shortage::Accept);
        crate::forward::close_idle_member_connections(1, STALE)
    } else {
        0
    };
    if FAILED.admit() {
        tracing::warn!(error = %e, closed_idle_member_connections = closed, "accept failed");
    } else {
        tracing::debug!(error = %e, closed_idle_member_connections = closed, "accept failed");
    }
    if closed == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    } else {
        // the room is there once the closing task (on any worker) has run
        tokio::task::yield_now().await;
    }
}

/// How long an idle member connection has waited before an accept may close it.
const STALE: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts a connection from `peer` under the per-client cap, if one is set; `Err` when the
/// client is at its cap (counted as refused).
fn count_client(
    config: &ServeConfig,
    peer: SocketAddr,
) -> Result<Option<crate::limits::CountedConnection>, ()> {
    let Some(limit) = &config.client_connections else {
        return Ok(None);
    };
    config
        .client_counts
        .open(peer.ip(), limit)
        .inspect_err(|()| {
            config.stats.refuse_per_client();
            tracing::debug!(client = %peer.ip(), "client at its connection cap: refused");
        })
}

/// A connection's places under the cap, once there are (at the cap, when a connection
/// closes); `None` once `shutdown` completes.
///
/// Why after the accept, not before: with several workers on a port, each taking its
/// places before accepting held them while its own backlog was empty, and a client the
/// kernel gave another worker waited with the cap not reached. Taken after, a worker at the
/// cap holds one accepted connection unread (one descriptor a worker, in the reserve).
async fn place(
    slots: &Arc<Semaphore>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_many_owned(CONNECTION as u32) {
        return Some(slot);
    }
    let mut acquire = pin!(slots.clone().acquire_many_owned(CONNECTION as u32));
    std::future::poll_fn(|cx| {
        if shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        acquire.as_mut().poll(cx).map(Result::ok)
    })
    .await
}

impl Server {
    /// The next client connection; `None` once `shutdown` completes.
    async fn accept(
        &self,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Option<io::Result<(TcpStream, SocketAddr)>> {
        std::future::poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            self.listener.poll_accept(cx).map(Some)
        })
        .await
    }
}
