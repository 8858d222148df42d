//! Forwarding to the picked member over hyper, HTTP/1.1 or HTTP/2, plain or TLS.
//!
//! Why hyper's client connections under a pool keyed by member: connection reuse to members
//! is most of a proxy's speed, hyper's HTTP/1.1 and HTTP/2 client connections are well kept
//! and tested against every framing attack, and a balancer knows the member before it looks
//! for a connection (no key to hash). This module adds what a balancer needs around them: the
//! picked member's address, hygiene and forwarding headers, name overrides, trust roots,
//! reverse rewriting, and errors that tell failover whether anything was sent.

mod body;
mod client;
mod config;
mod error;
mod future;
mod h1;
mod names;
mod pool;
mod resolve;
mod service;
mod tls;

/// The TLS settings error, also at [`crate::tls::TlsError`].
pub use crate::tls::TlsError;
pub use body::{MemberBody, MemberBodyError};
pub use config::{ForwardConfig, ProbeClient, MAX_MEMBER_HEAD_BYTES};
pub use error::NotPicked;
pub use future::ResponseFuture;
#[cfg(feature = "fuzzing")]
pub(crate) use h1::read_answer;
pub use h1::H1Error;
pub use resolve::{Addrs, Resolver};
pub use service::Forward;
pub use tls::UpstreamTls;
