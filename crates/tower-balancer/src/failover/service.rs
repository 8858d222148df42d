//! The failover service: set up the replay, start the first attempt.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{Replay, ReplayBody};
use super::future::ResponseFuture;
use super::policy::FailoverConfig;
use crate::registry::Registry;
use crate::BoxError;

/// The service made by [`FailoverLayer`](super::FailoverLayer).
#[derive(Debug, Clone)]
pub struct Failover<S> {
    inner: S,
    registry: Registry,
    config: Arc<FailoverConfig>,
}

impl<S> Failover<S> {
    pub(crate) fn new(inner: S, registry: Registry, config: Arc<FailoverConfig>) -> Self {
        Self {
            inner,
            registry,
            config,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Failover<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.config.budget.deposit();
        let members = self.registry.load().len();
        let max_attempts = 1 + self.config.max_retries.min(members.saturating_sub(1));
        let (mut parts, body) = req.into_parts();
        let replay = Replay::new(body, self.config.replay_cap);
        // a body still to come: every attempt's copy of the head carries its progress, for
        // the attempt's time limit and to tell the client's failure from the member's
        if let Some(upload) = replay.upload() {
            parts.extensions.insert(upload);
        }
        // the ready service takes the first attempt; its clone takes the later ones
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::start(ready, parts, replay, max_attempts, self.config.clone())
    }
}
