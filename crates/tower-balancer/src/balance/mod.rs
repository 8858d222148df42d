//! The innermost layer: pick a member, account for it, observe the outcome.
//!
//! Why a layer around one per-member service rather than a service per member: the inner
//! service (a pooled HTTP client, usually) already knows how to reach any endpoint; what it
//! lacks is the decision. [`Balance`] takes a [`Snapshot`](crate::registry::Snapshot) per
//! request, picks a member with the [`Strategy`](crate::strategy::Strategy) (or the
//! [`PinnedRoute`] the sticky layer set, when that member can serve), writes [`Picked`] into
//! the request's extensions, counts the request in flight until the response body ends,
//! records latency, bytes and the [`Outcome`](crate::outcome::Outcome) on the member, and puts
//! [`ServedBy`] into the response's extensions.
//!
//! Members may have a limit on requests in flight
//! ([`MemberSpec::max_in_flight`](crate::registry::MemberSpec::max_in_flight)); a request
//! that finds every member it could use full waits in the registry's
//! [`WaitQueue`](crate::registry::WaitQueue) for the first one with room, within
//! [`QueueSettings`].
//!
//! When no member can take the request the response future fails with [`BalanceError`];
//! [`error_status`](crate::error::error_status) maps any error of the stack to the status a
//! client should see (503 here).

mod body;
mod error;
mod extensions;
mod future;
mod key;
mod layer;
mod queue;
mod service;
mod status;
mod waiting;

pub use body::{RequestBody, ResponseBody};
pub use error::{AttemptError, BalanceError};
pub use extensions::{
    AttemptTimeout, Picked, PinnedRoute, RequestKey, SentTo, ServedBy, UploadProgress,
};
pub use future::{Granted, ResponseFuture};
pub use key::{HashKey, HeaderKey, PathKey};
pub use layer::BalanceLayer;
pub use queue::{QueueSettings, DEFAULT_QUEUE_LENGTH, DEFAULT_QUEUE_TIMEOUT};
pub use service::Balance;
pub use status::FailureStatuses;
pub use waiting::Waiting;
