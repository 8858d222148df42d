//! Replacing what serves while it serves: the stack ([`Reloadable`]) and the serving
//! settings with the TLS certificate ([`LiveSettings`]).
//!
//! Why per request: a reload (SIGHUP, nginx's `-s reload`) must reach clients on
//! connections that stay open for minutes, as browsers' and load generators' keep-alive
//! connections do. nginx starts new workers and lets old ones finish their connections;
//! here every request takes the newest stack, so a reload is in force for the next request
//! on every connection, and a request in flight finishes on the stack it started on. The
//! cost on the request path is one atomic load: the stack is cloned per request anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tower_service::Service;

use super::config::ServeConfig;

/// A stack that can be replaced while it serves: every clone made after
/// [`replace`](Self::replace) is the new stack; requests already in flight finish on the
/// stack they started on.
///
/// ```
/// use std::convert::Infallible;
/// use tower::{service_fn, Service, ServiceExt};
/// use tower_balancer_proxy::serve::Reloadable;
///
/// // a stack made from settings, as a reload makes it again from the new file
/// fn stack(answer: &'static str) -> impl Service<(), Response = &'static str, Error = Infallible> + Clone {
///     service_fn(move |()| async move { Ok::<_, Infallible>(answer) })
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let live = Reloadable::new(stack("first"));
/// let held = live.clone(); // what a server holds, and clones for each request
/// assert_eq!(held.clone().oneshot(()).await.unwrap(), "first");
/// live.replace(stack("second"));
/// assert_eq!(held.clone().oneshot(()).await.unwrap(), "second");
/// # }
/// ```
#[derive(Debug)]
pub struct Reloadable<S> {
    slot: Arc<Slot<S>>,
    generation: u64,
    inner: S,
}

#[derive(Debug)]
struct Slot<S> {
    generation: AtomicU64,
    current: ArcSwap<(u64, S)>,
    writer: Mutex<()>,
}

impl<S: Clone> Reloadable<S> {
    /// Serves `stack` until it is replaced.
    pub fn new(stack: S) -> Self {
        Self {
            slot: Arc::new(Slot {
                generation: AtomicU64::new(0),
                current: ArcSwap::from_pointee((0, stack.clone())),
                writer: Mutex::new(()),
            }),
            generation: 0,
            inner: stack,
        }
    }

    /// Makes `stack` what every clone made from now on serves, on every clone of this
    /// `Reloadable` (every connection and worker sharing it).
    pub fn replace(&self, stack: S) {
        let _one_writer = self
            .slot
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = self.slot.generation.load(Ordering::Acquire) + 1;
        self.slot.current.store(Arc::new((next, stack)));
        // after the store: a clone that sees the new number finds the new stack
        self.slot.generation.store(next, Ordering::Release);
    }

    /// How many times the stack was replaced.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.slot.generation.load(Ordering::Acquire)
    }
}

impl<S: Clone> Clone for Reloadable<S> {
    fn clone(&self) -> Self {
        if self.slot.generation.load(Ordering::Acquire) == self.generation {
            return Self {
                slot: self.slot.clone(),
                generation: self.generation,
                inner: self.inner.clone(),
            };
        }
        let current = self.slot.current.load();
        Self {
            slot: self.slot.clone(),
            generation: current.0,
            inner: current.1.clone(),
        }
    }
}

impl<S, R> Service<R> for Reloadable<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req)
    }
}

/// The serving settings of one or more [`Server`](super::Server)s (workers on one port),
/// replaceable while they serve: timeouts, header limits and the TLS certificate apply to
/// connections accepted after [`replace`](Self::replace); connections already open keep
/// theirs. The connection cap and the counters stay those the servers started with.
#[derive(Debug, Clone)]
pub struct LiveSettings(Arc<ArcSwap<ServeConfig>>);

impl LiveSettings {
    pub(crate) fn new(config: ServeConfig) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The settings new connections get.
    #[must_use]
    pub fn current(&self) -> Arc<ServeConfig> {
        self.0.load_full()
    }

    /// Gives connections accepted from now on `config`'s timeouts, limits and TLS; keeps the
    /// running servers' connection cap, counters and the bytes read ahead.
    pub fn replace(&self, config: ServeConfig) {
        let old = self.0.load();
        let config = ServeConfig {
            max_connections: old.max_connections,
            stats: old.stats.clone(),
            client_counts: old.client_counts.clone(),
            places: old.places.clone(),
            read_ahead: old.read_ahead.clone(),
            ..config
        };
        self.0.store(Arc::new(config));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[tokio::test]
    async fn clones_made_after_a_replace_serve_the_new_stack() {
        #[derive(Clone)]
        struct Answer(&'static str);
        impl Service<()> for Answer {
            type Response = &'static str;
            type Error = Infallible;
            type Future = std::future::Ready<Result<&'static str, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, (): ()) -> Self::Future {
                std::future::ready(Ok(self.0))
            }
        }
        let held = Reloadable::new(Answer("old"));
        let in_flight = held.clone();
        held.replace(Answer("new"));
        // a clone taken before the replace (a request in flight) keeps the old stack
        assert_eq!(in_flight.oneshot(()).await.unwrap(), "old");
        // clones of any holder made after it serve the new one, again and again
        let other = held.clone();
        for _ in 0..3 {
            assert_eq!(other.clone().oneshot(()).await.unwrap(), "new");
            assert_eq!(held.clone().oneshot(()).await.unwrap(), "new");
        }
        held.replace(Answer("third"));
        assert_eq!(other.clone().oneshot(()).await.unwrap(), "third");
        assert_eq!(held.generation(), 2);
    }

    #[tokio::test]
    async fn settings_keep_the_cap_and_counters_the_server_started_with() {
        let first = ServeConfig::new().max_connections(7);
        let stats = first.stats.clone();
        let live = LiveSettings::new(first);
        live.replace(
            ServeConfig::new()
                .max_connections(99)
                .header_read_timeout(std::time::Duration::from_secs(3)),
        );
        let now = live.current();
        assert_eq!(now.max_connections, Some(7));
        assert_eq!(now.header_read_timeout, std::time::Duration::from_secs(3));
        drop(stats.connection());
        assert_eq!(now.stats.accepted(), 1);
    }
}
