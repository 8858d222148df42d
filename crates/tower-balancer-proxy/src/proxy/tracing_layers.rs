//! The request's span, for tower-http's `TraceLayer`: method, path, client and the request
//! id (made by [`request_id`](super::request_id)), so every event of a request can be told
//! apart in a debug log; `Cookie` and `Authorization` are marked sensitive (tower-http's
//! `SetSensitiveRequestHeadersLayer`) so no log prints them.

use http::Request;
use tower_balancer::client::ClientAddr;
use tower_http::trace::MakeSpan;

/// The request's span: method, path, client and request id (at DEBUG, so it costs nothing
/// unless debug logging is on).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> tracing::Span {
        let client = req.extensions().get::<ClientAddr>().map(|a| a.0);
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::debug_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            client = ?client,
            request_id = %id,
        )
    }
}
