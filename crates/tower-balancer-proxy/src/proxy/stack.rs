//! The one place the layers are put together, in the one right order, for both the builder
//! of [`Proxy`](super::Proxy) and the configuration file's balancer: request id → span (when
//! debug logging is on) → access log → per-client rate → routes → request-body idle limit → sticky → failover →
//! balance (with passive ejection) → response-body idle limit → forward.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderName};
use http_body::Body;
use tower::ServiceBuilder;
use tower_balancer::balance::{BalanceLayer, FailureStatuses, HeaderKey, QueueSettings};
use tower_balancer::failover::{FailoverConfig, FailoverLayer};
use tower_balancer::health::{OutlierConfig, OutlierDetection};
use tower_balancer::registry::Registry;
use tower_balancer::sticky::{StickyConfig, StickyLayer};
use tower_balancer::strategy::Strategy;
use tower_balancer::BoxError;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tower_layer::Layer;

use super::optional::OptionalLayer;
use super::request_id::{ProcessRequestIds, RequestIdLayer};
use super::tracing_layers::RequestSpan;
use crate::access_log::AccessLogLayer;
use crate::forward::ForwardConfig;
use crate::limits::{ClientRateLimitLayer, RequestBodyIdleLayer};
use crate::routes::{RouteTable, Router};
use crate::serve::Servable;
use crate::tls::TlsError;

/// The layers between the front and the members, with their settings.
#[derive(Debug, Clone)]
pub(crate) struct StackPlan<S> {
    pub(crate) sticky: StickyConfig,
    pub(crate) failover: FailoverConfig,
    pub(crate) strategy: S,
    pub(crate) hash_key: Option<HeaderName>,
    pub(crate) outliers: OutlierConfig,
    /// The queue for requests waiting on members at their limit.
    pub(crate) queue: QueueSettings,
    /// How long a client's request body may send nothing.
    pub(crate) request_idle: Duration,
    /// How long a member's response body may send nothing.
    pub(crate) response_idle: Duration,
    pub(crate) forward: ForwardConfig,
    /// Logs each request, outermost, when set.
    pub(crate) access_log: Option<crate::access_log::AccessLog>,
    /// Refuses a client's requests past its rate (429), inside the access log.
    pub(crate) client_rate: Option<ClientRateLimitLayer>,
    /// Virtual hosts and routes, inside the rate limit: none sends every request to the
    /// balancer.
    pub(crate) routes: Option<Arc<RouteTable>>,
}

impl<S> StackPlan<S> {
    /// Tells the routes the public URL member URLs are rewritten to (known once bound).
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn set_public(&mut self, public: &http::Uri) {
        if let Some(table) = self.routes.as_mut() {
            Arc::make_mut(table).public = public.authority().cloned();
        }
    }
}

impl<S> StackPlan<S>
where
    S: Strategy + Send + Sync + 'static,
{
    /// The stack for requests with bodies of type `B`, ejecting through `outliers` (whose
    /// readmission task must run beside it).
    pub(crate) fn stack<B>(
        self,
        registry: &Registry,
        outliers: OutlierDetection,
    ) -> Result<impl Servable<B, Error = std::convert::Infallible> + Sync, TlsError>
    where
        B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.stack_lanes(registry, outliers, Vec::new())
    }

    /// The stack with more balancers (`rest`, lanes 1… of the routes): this plan's request
    /// ids, access log, rate limit and routes in front of every balancer's own layers.
    pub(crate) fn stack_lanes<B>(
        self,
        registry: &Registry,
        outliers: OutlierDetection,
        rest: Vec<(Self, Registry, OutlierDetection)>,
    ) -> Result<impl Servable<B, Error = std::convert::Infallible> + Sync, TlsError>
    where
        B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let access_log = self.access_log.clone();
        let client_rate = self.client_rate.clone();
        let routes = self.routes.clone();
        let first = self.lane(registry, outliers)?;
        let mut lanes = Vec::with_capacity(rest.len());
        for (plan, registry, outliers) in rest {
            lanes.push(plan.lane(&registry, outliers)?);
        }
        let stack = match routes {
            Some(table) => Router::new(table, first, lanes),
            None => Router::single(first),
        };
        let sensitive = [
            header::COOKIE,
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
        ];
        // Debug logging on: the request span and its events, with Cookie and Authorization
        // marked sensitive so that nothing logging the request prints them. Off (the
        // default), they would record nothing for ~2,350 and ~1,000 instructions a request
        // (each measured alone; see `optional`), and no other log line prints a request's
        // headers.
        let debug = spans_recorded().then(|| {
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new(sensitive))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(RequestSpan)
                        // a member's 5xx is a response, counted in metrics and the access
                        // log: at the default ERROR level it was a log line per request
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                .into_inner()
        });
        Ok(ServiceBuilder::new()
            .layer(RequestIdLayer::new(ProcessRequestIds::new()))
            .layer(OptionalLayer(debug))
            .layer(AccessLogLayer::new(access_log))
            .layer(client_rate.unwrap_or_else(ClientRateLimitLayer::off))
            .service(stack))
    }

    /// One balancer's own layers: request-body idle limit → sticky → failover → balance →
    /// response-body idle limit → forward.
    fn lane<B>(
        self,
        registry: &Registry,
        outliers: OutlierDetection,
    ) -> Result<
        impl tower_service::Service<
                http::Request<B>,
                Response = http::Response<
                    impl Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + 'static,
                >,
                Error: Into<BoxError>,
                Future: Send + 'static,
            > + Clone
            + Send
            + Sync
            + 'static,
        TlsError,
    >
    where
        B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let forward = self.forward.build(registry.clone())?;
        let forward = crate::limits::ResponseBodyIdleLayer::new(self.response_idle).layer(forward);
        // the gateway failures count against a member, and the statuses failover acts on
        // (Apache's `failonstatus` puts the member in error too)
        let counted = FailureStatuses::default().union(self.failover.failure_statuses());
        let mut balance = BalanceLayer::new(registry.clone(), self.strategy)
            .observer(outliers)
            .queue(self.queue)
            .failure_statuses(counted);
        if let Some(name) = self.hash_key {
            balance = balance.hash_key(HeaderKey::new(name));
        }
        let failover = FailoverLayer::new(registry.clone(), self.failover);
        let sticky = StickyLayer::new(registry.clone(), self.sticky);
        Ok(RequestBodyIdleLayer::new(self.request_idle)
            .layer(sticky.layer(failover.layer(balance.layer(forward)))))
    }
}

/// Whether the request span (DEBUG) would be recorded by the subscriber in force: the
/// global level hint, so debug logging for any target turns the spans on.
fn spans_recorded() -> bool {
    tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG
}

#[cfg(test)]
mod tests {
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// A subscriber that takes everything up to DEBUG, as `RUST_LOG=debug` does.
    struct Debug;

    impl Subscriber for Debug {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::DEBUG)
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn spans_are_on_when_debug_logging_is() {
        tracing::subscriber::with_default(Debug, || assert!(super::spans_recorded()));
    }
}
