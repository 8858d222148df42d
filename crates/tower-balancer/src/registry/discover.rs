//! Feeding the registry from a discovery source.
//!
//! Why a stream of changes: membership may come from DNS, a file, Kubernetes or Consul. Each
//! of them can be written as a stream of `tower::discover::Change` items, so the layers never
//! need to know where members come from, and the same stream type tower's own `Balance`
//! consumes works here.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::TryStream;
use pin_project_lite::pin_project;
use tower::discover::Change;

use super::handle::Registry;
use super::member::{MemberId, MemberSpec};

pin_project! {
    /// A future that applies every change from a discovery stream to a registry, until the
    /// stream ends. Made by [`Registry::discover`].
    ///
    /// An insert of a known id updates that member in place ([`Registry::upsert`]); a remove
    /// of an unknown id is ignored. A stream error or a refused change is logged with
    /// `tracing` and skipped: the last good membership stays.
    #[must_use = "futures do nothing unless polled"]
    pub struct Discovery<D> {
        #[pin]
        stream: D,
        registry: Registry,
        applied: u64,
        skipped: u64,
    }
}

/// What a finished [`Discovery`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryReport {
    /// Changes applied to the registry.
    pub applied: u64,
    /// Stream errors and refused changes that were skipped.
    pub skipped: u64,
}

impl Registry {
    /// Drives this registry from `stream` until it ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower::discover::Change;
    /// use tower_balancer::registry::{MemberId, MemberSpec, Registry};
    ///
    /// let registry = Registry::new();
    /// let node1 = MemberId::new("node1")?;
    /// let changes = vec![
    ///     Ok::<_, std::io::Error>(Change::Insert(node1.clone(), MemberSpec::new(node1.clone(), "http://127.0.0.1:9763".parse()?))),
    ///     Ok(Change::Remove(node1)),
    /// ];
    /// let report = registry.discover(tokio_stream_from(changes)).await;
    /// assert_eq!(report.applied, 2);
    /// assert!(registry.load().is_empty());
    /// # Ok(()) }
    /// # fn tokio_stream_from<T: Unpin>(v: Vec<T>) -> impl futures_core::Stream<Item = T> {
    /// #     struct S<T>(std::collections::VecDeque<T>);
    /// #     impl<T: Unpin> futures_core::Stream for S<T> {
    /// #         type Item = T;
    /// #         fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
    /// #             std::task::Poll::Ready(self.0.pop_front())
    /// #         }
    /// #     }
    /// #     S(v.into())
    /// # }
    /// ```
    pub fn discover<D>(&self, stream: D) -> Discovery<D>
    where
        D: TryStream<Ok = Change<MemberId, MemberSpec>>,
        D::Error: fmt::Display,
    {
        Discovery {
            stream,
            registry: self.clone(),
            applied: 0,
            skipped: 0,
        }
    }
}

impl<D> Future for Discovery<D>
where
    D: TryStream<Ok = Change<MemberId, MemberSpec>>,
    D::Error: fmt::Display,
{
    type Output = DiscoveryReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match std::task::ready!(this.stream.as_mut().try_poll_next(cx)) {
                None => {
                    return Poll::Ready(DiscoveryReport {
                        applied: *this.applied,
                        skipped: *this.skipped,
                    })
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "discovery source failed; keeping the last good members");
                    *this.skipped += 1;
                }
                Some(Ok(Change::Insert(id, mut spec))) => {
                    // the key is authoritative, as in tower::discover
                    spec.id = id;
                    match this.registry.upsert(spec) {
                        Ok(_) => *this.applied += 1,
                        Err(e) => {
                            tracing::warn!(error = %e, "discovery change refused");
                            *this.skipped += 1;
                        }
                    }
                }
                Some(Ok(Change::Remove(id))) => {
                    if this.registry.remove(id.as_str()).is_ok() {
                        *this.applied += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    struct Items<T>(VecDeque<T>);
    impl<T: Unpin> futures_core::Stream for Items<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn id(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }

    #[tokio::test]
    async fn errors_and_bad_changes_are_skipped_and_the_rest_applied() {
        let r = Registry::new();
        let items: Vec<Result<Change<MemberId, MemberSpec>, &str>> = vec![
            Ok(Change::Insert(
                id("a"),
                MemberSpec::new(id("a"), "http://a.test".parse().unwrap()),
            )),
            Err("resolver down"),
            Ok(Change::Insert(
                id("b"),
                MemberSpec::new(id("b"), "http://b.test".parse().unwrap()).weight(0),
            )),
            Ok(Change::Remove(id("never-there"))),
        ];
        let report = r.discover(Items(items.into())).await;
        assert_eq!(report.applied, 1);
        assert_eq!(report.skipped, 2);
        assert!(r.load().get("a").is_some());
        assert!(r.load().get("b").is_none());
    }
}
