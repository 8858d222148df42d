//! The sticky service: resolve the carried route, pin, pass on.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Scheme;
use http::{Request, Response};
use tower_service::Service;

use super::config::StickyConfig;
use super::future::ResponseFuture;
use super::route::{first_cookie_values, route_from_session_id, url_param, MAX_COOKIE_NAMES};
use crate::balance::PinnedRoute;
use crate::client::ClientTls;
use crate::registry::{MemberId, Registry, Snapshot};

/// The service made by [`StickyLayer`](super::StickyLayer).
#[derive(Debug, Clone)]
pub struct Sticky<S> {
    inner: S,
    registry: Registry,
    config: Arc<StickyConfig>,
}

impl<S> Sticky<S> {
    pub(crate) fn new(inner: S, registry: Registry, config: Arc<StickyConfig>) -> Self {
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

/// The registered member `route` names, if any: the only way a route becomes a destination.
fn registered(route: &str, snapshot: &Snapshot) -> Option<MemberId> {
    if !MemberId::is_valid(route) {
        return None;
    }
    snapshot.get(route).map(|m| m.id().clone())
}

impl StickyConfig {
    /// The route a request carries, in order: URL parameters (the URL wins, as in Apache), the
    /// balancer's cookie, application session cookies. The first candidate naming a
    /// registered member of `snapshot` is taken; unknown or malformed ones are passed over,
    /// so the result is always a registered member.
    #[must_use]
    pub fn route_of<B>(&self, req: &Request<B>, snapshot: &Snapshot) -> Option<MemberId> {
        self.route_and_age(req, snapshot).map(|(id, _)| id)
    }

    /// As [`route_of`](Self::route_of), and whether the route came from the balancer's
    /// cookie signed with an older key.
    fn route_and_age<B>(&self, req: &Request<B>, snapshot: &Snapshot) -> Option<(MemberId, bool)> {
        for name in &self.url_params {
            if let Some(v) = url_param(req.uri(), name) {
                if let Some(id) =
                    route_from_session_id(v, self.separator).and_then(|r| registered(r, snapshot))
                {
                    return Some((id, false));
                }
            }
        }
        let mut names = [""; MAX_COOKIE_NAMES];
        names[0] = &self.cookie_name;
        for (slot, name) in names[1..].iter_mut().zip(&self.session_cookies) {
            *slot = name;
        }
        let count = 1 + self.session_cookies.len().min(MAX_COOKIE_NAMES - 1);
        let values = first_cookie_values(req.headers(), &names[..count]);
        if let Some(v) = values[0] {
            if let Some(found) = self.codec.decode(v, snapshot) {
                return Some(found);
            }
            if !self.codec.is_signed() || self.accept_apache_form {
                if let Some(id) =
                    route_from_session_id(v, Some('.')).and_then(|r| registered(r, snapshot))
                {
                    return Some((id, false));
                }
            }
        }
        values[1..count].iter().flatten().find_map(|v| {
            route_from_session_id(v, self.separator)
                .and_then(|r| registered(r, snapshot))
                .map(|id| (id, false))
        })
    }
}

impl<S, B, RB> Service<Request<B>> for Sticky<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (carried, resign) = {
            let snapshot = self.registry.load();
            match self.config.route_and_age(&req, &snapshot) {
                Some((id, old_key)) => (Some(id), old_key),
                None => (None, false),
            }
        };
        if let Some(id) = &carried {
            let pin = PinnedRoute::new(id.clone());
            let pin = if self.config.strict {
                pin.strict()
            } else {
                pin
            };
            req.extensions_mut().insert(pin);
        }
        let tls = req.extensions().get::<ClientTls>().is_some()
            || req.uri().scheme() == Some(&Scheme::HTTPS);
        ResponseFuture {
            inner: self.inner.call(req),
            carried,
            resign,
            tls,
            registry: self.registry.clone(),
            config: self.config.clone(),
        }
    }
}
