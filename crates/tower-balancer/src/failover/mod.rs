//! Failover: when an attempt on a member fails, try another member, when it is safe.
//!
//! Why careful: retrying is what turns "a node died" into "nobody noticed", and also what
//! turns one payment into two. HAProxy and Envoy retry after a request may have reached a
//! member without looking at the method; [`FailoverLayer`] does not:
//!
//! - a **connect failure** (nothing was sent) is retried for every method, replaying the body;
//! - a failure **after the request may have reached the member** (reset, timeout, a
//!   `fail_on_status` response) is retried only for idempotent methods (GET, HEAD, OPTIONS,
//!   TRACE, PUT, DELETE) unless you opt in;
//! - nothing is retried once response bytes went to the client (a response is only ever
//!   returned, never retried after being returned);
//! - each attempt goes to a member not tried yet ([`Tried`](crate::strategy::Tried) in the
//!   request extensions, honoured by the balance layer);
//! - the request body is buffered lazily up to a cap (64 KiB) and replayed byte for byte; a
//!   body over the cap is not retried once any of it was sent, and the reason is reported as
//!   [`NotRetried::BodyOverCap`] (in [`FailoverError`] or the response extensions);
//! - retries of requests that may have been processed spend a budget (20% of requests plus
//!   10 a second, over a 10 s window, by default: linkerd's), so a dying cluster does not see
//!   a retry storm;
//!   a retry after a connect failure spends none: the request reached no member, so sending
//!   it elsewhere adds no load, and a dead member never costs a client an error while another
//!   member can serve (the attempt limit still bounds it);
//! - each attempt waits at most the per-try timeout for response headers (60 s by default,
//!   as nginx's `proxy_read_timeout` and Apache's `Timeout`); a timed-out idempotent request
//!   goes to another member, any other gets 504; and an optional overall deadline, with
//!   jittered exponential backoff between attempts.
//!
//! When every attempt failed the answer is the last member's error or response; errors map
//! to 502, 503 or 504 through [`error_status`](crate::error::error_status), never 408, and
//! no upstream error text is meant for the client.

mod body;
mod budget;
mod error;
mod future;
mod layer;
mod policy;
mod service;

pub use body::{ReplayBody, ReplayError};
pub use error::{FailoverError, NotRetried};
pub use future::ResponseFuture;
pub use layer::FailoverLayer;
pub use policy::{
    is_idempotent, FailoverConfig, DEFAULT_MAX_RETRIES, DEFAULT_PER_TRY_TIMEOUT, DEFAULT_REPLAY_CAP,
};
pub use service::Failover;

/// In a response that took more than one attempt: how many. A response without it was the
/// first attempt's (read a missing one as 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts(pub usize);
