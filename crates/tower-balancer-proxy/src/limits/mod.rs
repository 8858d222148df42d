//! Limits that keep one client, or one slow party, from holding what others need: time
//! limits on bodies, and per-client request rates and connection counts.
//!
//! Per client ([`ClientRateLimitLayer`], [`ClientConnectionLimit`]): one address flooding
//! requests gets 429 and one holding connections is refused more, while everybody else is
//! served; the address is the real client's under the trusted-proxy rules, and the memory
//! for clients is bounded.
//!
//! Time limits on bodies, so that neither a slow client nor a stalled member holds a
//! connection for ever.
//!
//! Why: headers have a read timeout in the server, and each attempt a response-header
//! timeout in the failover layer, but a client that sends complete headers and then one body
//! byte every few seconds, or a member that sends headers and then stalls, would otherwise
//! hold a member connection (and the client's) indefinitely. Both limits are idle limits,
//! reset by every frame that arrives, as nginx's `client_body_timeout` and
//! `proxy_read_timeout` and Apache's `RequestReadTimeout body=` are. The timing itself is
//! tower-http's [`TimeoutBody`](tower_http::timeout::TimeoutBody) on the client's body, and
//! our own on the member's (its module says why).
//!
//! - [`RequestBodyIdleLayer`]: outermost, on the client's body. A stall aborts the upstream
//!   request (its connection is closed, the member never sees a complete request) and the
//!   client gets 408 ([`client_status`](crate::serve::client_status) maps it).
//! - [`ResponseBodyIdleLayer`], innermost, around the forwarder: a member that stalls
//!   mid-body has its connection closed, and the client's connection is closed too, since
//!   its response is cut short.

mod client_connections;
mod client_key;
mod client_rate;
mod rate_table;
mod request_body;
mod response_body;

pub use client_connections::ClientConnectionLimit;
pub(crate) use client_connections::{ClientShare, ConnectionCounts, CountedConnection, Place};
pub use client_key::ClientKey;
pub use client_rate::{
    ClientRate, ClientRateLimit, ClientRateLimitLayer, RateLimited, ResponseFuture,
    DEFAULT_CLIENT_TABLE,
};
pub use request_body::{ClientBody, RequestBodyIdle, RequestBodyIdleLayer};
pub use response_body::{
    IdleBody, ResponseBodyIdle, ResponseBodyIdleError, ResponseBodyIdleLayer,
    ResponseFuture as ResponseBodyIdleFuture,
};

/// The default idle limit on request and response bodies: 60 s, as nginx's
/// `client_body_timeout` and `proxy_read_timeout`.
pub const DEFAULT_BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
